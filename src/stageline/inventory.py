"""What is where: every agent's tree in each environment, its QA status, and who acted last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stageline import rules
from stageline.actions import Workspace
from stageline.gitstore import CommitInfo, Store
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
    listed = store.subdirectories(ws.head, [f"{ENV_ROOT}/{env}" for env in ENVIRONMENTS])
    trees = {env: listed[f"{ENV_ROOT}/{env}"] for env in ENVIRONMENTS}
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


FIRST_CHUNK = 64  # commits diffed before looking whether every directory is attributed


def _last_actions(ws: Workspace, names: list[str]) -> dict[tuple[str, str], LastAction]:
    """For each (environment, agent) directory, the newest commit of the branch's
    first-parent chain that changed it against its first parent: the version
    ``stageline history`` lists first.

    The chain is diffed newest first in chunks that grow fourfold, and the walk
    stops once every directory is attributed. A root commit is not diffed file by
    file (for an organization's first import that is every file of every agent):
    one ``ls-tree`` lists the agent directories it holds. Only the commits that
    win a directory are read.
    """
    if not names:
        return {}
    store = ws.store
    few = len(names) <= 20
    # A few agents: git lists only the commits that touch them. Many: every commit
    # of the chain is diffed whole, which costs git less than testing each entry
    # of each environment directory against a pathspec.
    paths = [f"{ENV_ROOT}/{env}/{n}" for n in names for env in ENVIRONMENTS] if few \
        else [ENV_ROOT]
    wanted = {(env, n) for n in names for env in ENVIRONMENTS}
    winner: dict[tuple[str, str], str] = {}
    order = store.rev_list(["--first-parent", ws.head], paths if few else ())
    start, size = 0, FIRST_CHUNK
    while start < len(order) and len(winner) < len(wanted):
        chunk = order[start:start + size]
        changes = store.first_parent_changes(chunk, paths, roots=False, pathspec=few)
        for oid, parents in chunk:
            keys = _root_agents(store, oid) if not parents else {
                (parts[1], parts[2]) for change in changes.get(oid, ())
                if len(parts := change.path.split("/", 3)) > 3 and parts[0] == ENV_ROOT}
            for key in keys:
                if key in wanted and key not in winner:
                    winner[key] = oid
        start, size = start + size, size * 4
    oids = sorted(set(winner.values()))
    actions = {c.oid: LastAction(c.oid, actor_of(c, ws.policy), action_of(c), c.author_time)
               for c in store.read_commits(oids)}
    return {key: actions[oid] for key, oid in winner.items()}


def _root_agents(store: Store, commit: str) -> set[tuple[str, str]]:
    """The (environment, agent) directories a root commit holds."""
    listed = store.subdirectories(commit, [f"{ENV_ROOT}/{env}" for env in ENVIRONMENTS])
    return {(env, name) for env in ENVIRONMENTS for name in listed[f"{ENV_ROOT}/{env}"]}


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
