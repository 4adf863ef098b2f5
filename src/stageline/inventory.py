"""What is where: every agent's tree in each environment, its QA status, and who acted last."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from stageline import approval, rules, windows
from stageline.approval import Approval
from stageline.git.process import in_parallel, nogc
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.layout import AGENT_DEPTH, APPROVALS, ENV_ROOT, ENVIRONMENTS, env_dir
from stageline.policy import Member, Policy
from stageline.workspace import Workspace


@dataclass(frozen=True)
class LastAction:
    commit: str
    actor: str | None
    action: str
    time: int

    @cached_property
    def json(self) -> dict[str, Any]:
        """As ``status --json`` shows it: one dict, shared by every directory this
        commit changed last (10,000 agents imported at once share one)."""
        return {"commit": self.commit, "actor": self.actor, "action": self.action}


@dataclass(frozen=True)
class AgentStatus:
    name: str
    trees: dict[str, str | None]
    ready: bool
    marked_by: str | None
    last: dict[str, LastAction | None]
    tests_passed: int | None = None  # the approval's conversation-test summary
    markers: tuple[str, ...] = ()  # who marked the current staging tree, oldest first
    required: int = 1  # marks production needs
    blocked_by: tuple[str, ...] = ()  # why production could not be pushed now

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
                env: {"tree": self.trees[env],
                      "last_action": None if (last := self.last.get(env)) is None else last.json}
                for env in environments
            },
            "staging_equals_development": self.staging_equals_development,
            "production_equals_staging": self.production_equals_staging,
            "ready_for_production": self.ready,
            "marked_by": self.marked_by,
            "approvals": {"marks": len(self.markers), "required": self.required,
                          "by": list(self.markers)},
            "blocked_by": list(self.blocked_by),
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


RESHIP = ("production was rolled back from this staging tree; promote a fix, or ship it "
          "again with --force-reship")


@nogc
def collect(ws: Workspace, only: str | None = None, with_last: bool = True,
            last_changes: dict[tuple[str, str], str] | None = None,
            now: datetime | None = None) -> list[AgentStatus]:
    """The status of every agent (or of ``only``) at the tip of the workspace's branch;
    ``last_changes`` is the newest commit that changed each ``(env, agent)`` directory,
    when the caller has it already (``history.Walked.last_changes``); release windows
    are judged at ``now`` (default: this machine's clock)."""
    store = ws.store
    listed = store.subdirectories(ws.head, [f"{ENV_ROOT}/{env}" for env in ENVIRONMENTS])
    trees = {env: listed[f"{ENV_ROOT}/{env}"] for env in ENVIRONMENTS}
    names = sorted(set().union(*trees.values()))
    if only is not None:
        names = [n for n in names if n == only]
    winners: dict[tuple[str, str], str] = {}
    approvals: dict[str, Approval | str | None] = {}

    def read_approvals() -> None:
        approvals.update(_approvals(store, ws.head, names))

    def walk() -> None:
        present = {(env, name) for env in ENVIRONMENTS for name in trees[env]}
        winners.update(_last_changes(store, ws.head, names, present))

    if last_changes is not None:
        wanted = set(names)
        winners.update({key: oid for key, oid in last_changes.items() if key[1] in wanted})
        with_last = False
    # git walks the history in its own processes while the approvals are parsed here.
    in_parallel([read_approvals, walk] if with_last else [read_approvals])
    commits = {c.oid: c for c in store.read_commits(sorted(set(winners.values())))}
    actions = {oid: LastAction(oid, actor_of(c, ws.policy), action_of(c), c.author_time)
               for oid, c in commits.items()}
    result = []
    now = now or datetime.now(UTC)
    frozen = windows.blocking(list(ws.policy.windows.get("production", ())), now) \
        if ws.policy.windows.get("production") else None
    # The tree production was rolled back from, where production's last change is a
    # rollback: the tree at that commit's first parent (one batch of reads).
    rolled = [(name, c) for name in names if (oid := winners.get(("production", name)))
              and (c := commits[oid]).parents and action_of(c) == rules.ROLLBACK]
    rolled_from = dict(zip([name for name, _ in rolled], store.trees_at(
        [(c.parents[0], env_dir("production", name)) for name, c in rolled]), strict=True))

    def counts(marker: str) -> bool:  # a mark counts while its member holds qa
        return (who := ws.policy.member(marker)) is not None and who.has("qa")

    for name in names:
        record = approvals.get(name)
        staging = trees["staging"].get(name)
        problem = approval.problem(record, name, staging)
        approved = record if isinstance(record, Approval) and problem is None else None
        if approved is not None:
            problem = approval.shortfall(approved, ws.policy.approvals_required, counts)
        ready = problem is None
        blocked: list[str] = []
        if staging is not None and staging != trees["production"].get(name):
            blocked += [problem] if problem else []
            blocked += [f"production is {frozen}"] if frozen else []
            if rolled_from.get(name) == staging:
                blocked += [RESHIP]
        result.append(AgentStatus(
            name,
            {env: trees[env].get(name) for env in ENVIRONMENTS},
            ready,
            approved.marked_by if approved else None,
            {env: actions[oid] if (oid := winners.get((env, name))) else None
             for env in ENVIRONMENTS},
            approved.tests_passed if approved else None,
            tuple(m for m in approved.markers if counts(m)) if approved else (),
            ws.policy.approvals_required,
            tuple(blocked),
        ))
    return result


def _approvals(store: Store, head: str, names: list[str]) -> dict[str, Approval | str]:
    """Each named agent's approval file, parsed (one batch of reads)."""
    tree = store.tree_at(head, APPROVALS)
    files = store.read_tree(tree) if tree else {}
    entries = [(name, entry) for name in names
               if (entry := files.get(f"{name}.yaml")) and not entry.is_tree]
    blobs = store.read_blobs([entry.oid for _, entry in entries])
    return {name: approval.parse(blob, f"{APPROVALS}/{name}.yaml")
            for (name, _), blob in zip(entries, blobs, strict=True)}


FIRST_CHUNK = 64  # commits diffed before looking whether every directory is attributed


def _last_changes(store: Store, head: str, names: list[str],
                  present: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """For each (environment, agent) directory, the newest commit of the branch's
    first-parent chain that changed it against its first parent: the version
    ``stageline history`` lists first. ``present`` holds the directories the tip has.

    The chain is diffed newest first in chunks that grow fourfold, and the walk
    stops once every directory is attributed. The chain's first commit is not
    diffed (for an organization's first import that is every file of every
    agent): a directory the tip has that no later commit changed is the first
    commit's. Only git processes of their own are used (see ``in_parallel``).
    """
    if not names:
        return {}
    few = len(names) <= 20
    # A few agents: git lists only the commits that touch them. Many: every commit
    # of the chain is diffed whole, which costs git less than testing each entry
    # of each environment directory against a pathspec.
    paths = [f"{ENV_ROOT}/{env}/{n}" for n in names for env in ENVIRONMENTS] if few \
        else [ENV_ROOT]
    wanted = {(env, n) for n in names for env in ENVIRONMENTS}
    winner: dict[tuple[str, str], str] = {}
    order = store.rev_list(["--first-parent", head], paths if few else ())
    start, size = 0, FIRST_CHUNK
    while start < len(order) and len(winner) < len(wanted):
        chunk = order[start:start + size]
        changes = store.first_parent_changes(chunk, paths, roots=False, pathspec=few,
                                             trees=True, depth=AGENT_DEPTH)
        for oid, _parents in chunk:
            for change in changes.get(oid, ()):
                # The walk is cut at the agent directories: each changed one is an entry.
                key = rules.agent_directory(change)
                if key in wanted:
                    winner.setdefault(key, oid)
        start, size = start + size, size * 4
    if order and not order[-1][1]:
        # The walk reached the first commit (with a pathspec: the first that had any of
        # the paths, its parents rewritten away): what the tip has and nothing since
        # changed has been there since that commit.
        for key in (wanted & present) - winner.keys():
            winner[key] = order[-1][0]
    return winner


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
            item["approvals"] = {"marks": len(status.markers), "required": status.required,
                                 "by": list(status.markers)}
        shown.append(item)
    return shown
