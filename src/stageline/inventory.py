"""What is where: every agent's tree in each environment, its QA status, and who acted last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stageline import rules
from stageline.actions import Workspace
from stageline.gitstore import CommitInfo
from stageline.layout import APPROVALS, ENV_ROOT, ENVIRONMENTS
from stageline.policy import Member, Policy


@dataclass(frozen=True)
class LastAction:
    commit: str
    actor: str | None
    action: str
    time: int


@dataclass(frozen=True)
class AgentStatus:
    name: str
    trees: dict[str, str | None]
    ready: bool
    marked_by: str | None
    last: dict[str, LastAction | None]
    tests_passed: int | None = None  # the approval's conversation-test summary

    @property
    def staging_equals_development(self) -> bool:
        return self.trees["staging"] is not None and self.trees["staging"] == self.trees[
            "development"]

    @property
    def production_equals_staging(self) -> bool:
        return self.trees["production"] is not None and self.trees["production"] == self.trees[
            "staging"]

    def to_json(self, environments: tuple[str, ...] = ENVIRONMENTS) -> dict[str, Any]:
        return {
            "name": self.name,
            "environments": {
                env: {
                    "tree": self.trees[env],
                    "last_action": None if self.last.get(env) is None else {
                        "commit": self.last[env].commit,  # type: ignore[union-attr]
                        "actor": self.last[env].actor,  # type: ignore[union-attr]
                        "action": self.last[env].action,  # type: ignore[union-attr]
                    },
                } for env in environments
            },
            "staging_equals_development": self.staging_equals_development,
            "production_equals_staging": self.production_equals_staging,
            "ready_for_production": self.ready,
            "marked_by": self.marked_by,
            "tests": None if self.tests_passed is None else {"passed": self.tests_passed,
                                                             "failed": 0},
        }


def actor_of(commit: CommitInfo, policy: Policy) -> str | None:
    """The member behind a commit: the author's member id. The ``Stageline-Actor``
    trailer is only a claim (the hook checks it on protected branches), used only
    when the author is no member."""
    member = policy.member_by_email(commit.author_email)
    if member is not None:
        return member.id
    claimed = commit.trailers.get(rules.ACTOR_TRAILER)
    return claimed if claimed and "\n" not in claimed else None


def action_of(commit: CommitInfo) -> str:
    return commit.trailers.get("Stageline-Action", "edit").split("\n")[0]


def collect(ws: Workspace, only: str | None = None, with_last: bool = True) -> list[AgentStatus]:
    """The status of every agent (or of ``only``) at the tip of the workspace's branch."""
    store = ws.store
    env_trees = store.trees_at([(ws.head, f"{ENV_ROOT}/{env}") for env in ENVIRONMENTS])
    trees: dict[str, dict[str, str]] = {}
    for env, tree in zip(ENVIRONMENTS, env_trees, strict=True):
        entries = store.read_tree(tree) if tree else {}
        trees[env] = {name: e.oid for name, e in entries.items() if e.is_tree}
    names = sorted(set().union(*trees.values()))
    if only is not None:
        names = [n for n in names if n == only]
    approvals_tree = store.tree_at(ws.head, APPROVALS)
    approval_files = store.read_tree(approvals_tree) if approvals_tree else {}
    last = _last_actions(ws, names) if with_last else {}
    result = []
    for name in names:
        staging = trees["staging"].get(name)
        entry = approval_files.get(f"{name}.yaml")
        approval = (rules.parse_approval(store.read_blob(entry.oid), f"{APPROVALS}/{name}.yaml")
                    if entry and not entry.is_tree else None)
        ready = rules.approval_problem(approval, name, staging) is None
        result.append(AgentStatus(
            name,
            {env: trees[env].get(name) for env in ENVIRONMENTS},
            ready,
            approval.marked_by if isinstance(approval, rules.Approval) and ready else None,
            {env: last.get((env, name)) for env in ENVIRONMENTS},
            approval.tests_passed if isinstance(approval, rules.Approval) and ready else None,
        ))
    return result


def _last_actions(ws: Workspace, names: list[str]) -> dict[tuple[str, str], LastAction]:
    if not names:
        return {}
    paths = [f"{ENV_ROOT}/{env}/{n}" for n in names for env in ENVIRONMENTS] \
        if len(names) <= 20 else [ENV_ROOT]
    wanted = {(env, n) for n in names for env in ENVIRONMENTS}
    found: dict[tuple[str, str], LastAction] = {}
    for commit in ws.store.walk([ws.head], paths):
        for change in commit.changes:
            parts = change.path.split("/")
            key = (parts[1], parts[2]) if len(parts) > 3 else None
            if key in wanted and key not in found:
                found[key] = LastAction(commit.oid, actor_of(commit, ws.policy),
                                        action_of(commit), commit.author_time)
        if len(found) == len(wanted):
            break
    return found


def visible_environments(member: Member) -> tuple[str, ...]:
    """The environments a role's own view shows (§4: developers development, QA staging)."""
    if rules.allowed(member, rules.VIEW_ALL):
        return ENVIRONMENTS
    envs = []
    if member.has("developer"):
        envs.append("development")
    if member.has("qa"):
        envs.append("staging")
    return tuple(envs)


def visible_agents(statuses: list[AgentStatus], member: Member) -> list[dict[str, Any]]:
    envs = visible_environments(member)
    shown = []
    for status in statuses:
        present = [env for env in envs if status.trees[env] is not None]
        if not present:
            continue
        item: dict[str, Any] = {"name": status.name, "environments": {
            env: {"tree": status.trees[env]} for env in present}}
        if "staging" in envs:
            item["ready_for_production"] = status.ready
        shown.append(item)
    return shown
