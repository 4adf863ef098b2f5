"""Who may do what, and the invariants of promotion and approval.

Pure functions over member ids, paths and tree ids: no git, no click, no I/O.
The CLI's actions and the server's hook ask the same questions here, so a rule
is written once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from stageline import approval, trailers, windows, yamlsafe
from stageline.approval import Approval
from stageline.layout import (
    AGENT_DEPTH,
    APPROVALS,
    DELETED_MODE,
    ENV_ROOT,
    ENVIRONMENTS,
    POLICY_FILE,
    REGULAR_MODES,
    TREE_MODE,
    folded,
    is_agent_name,
    mode_name,
    name_problem,
    stands_for,
)
from stageline.policy import Member, Policy

EDIT_DEVELOPMENT = "edit-development"
CREATE_AGENT = "create-agent"
PROMOTE_STAGING = "promote-to-staging"
MARK_READY = "mark-ready"
PROMOTE_PRODUCTION = "promote-to-production"
ROLLBACK = "rollback"
EDIT_POLICY = "edit-policy"
EDIT_SETTINGS = "edit-settings"
EDIT_CI = "edit-ci"
EDIT_OTHER = "edit-other"
INIT = "init"
VIEW_ALL = "view-all"

_DEV = frozenset({"developer", "org-admin"})
_ADMIN = frozenset({"org-admin"})
PERMISSIONS: dict[str, frozenset[str]] = {
    EDIT_DEVELOPMENT: _DEV,
    CREATE_AGENT: _DEV,
    PROMOTE_STAGING: _DEV,
    MARK_READY: frozenset({"qa"}),
    PROMOTE_PRODUCTION: _ADMIN,
    ROLLBACK: _ADMIN,
    EDIT_POLICY: _ADMIN,
    EDIT_SETTINGS: _ADMIN,
    EDIT_CI: _ADMIN,
    EDIT_OTHER: _DEV,
    INIT: _ADMIN,
    VIEW_ALL: _ADMIN,
}

DESCRIPTIONS = {
    EDIT_DEVELOPMENT: "edit development",
    CREATE_AGENT: "create an agent",
    PROMOTE_STAGING: "promote to staging",
    MARK_READY: "mark an agent Ready for Production",
    PROMOTE_PRODUCTION: "push to production",
    ROLLBACK: "roll production back",
    EDIT_POLICY: "change stageline.yaml",
    EDIT_SETTINGS: "change settings/",
    EDIT_CI: "change CI definitions, shared hooks or repository settings (attributes, "
             "code owners, mailmap, submodules)",
    EDIT_OTHER: "change files outside the environments",
    INIT: "create the organization",
    VIEW_ALL: "see every environment",
}

# CI definitions, shared client hooks and what git reads as settings of the repository:
# whoever changes them decides what runs on the CI system and on members' machines, or
# what a checkout contains. Org-admins', for every forge and tool we know of (the contract
# names GitHub's and GitLab's; the others grant the same powers).
CI_DIRS = (".github", ".gitlab", ".gitea", ".forgejo", ".circleci", ".buildkite",
           ".woodpecker", ".githooks", ".husky", ".devcontainer", ".azure-pipelines")
CI_FILES = (".gitlab-ci.yml", ".gitlab-ci.yaml", "Jenkinsfile", ".travis.yml",
            "bitbucket-pipelines.yml", "azure-pipelines.yml", ".drone.yml", ".drone.yaml",
            ".woodpecker.yml", ".woodpecker.yaml", "buildkite.yml", "buildkite.yaml",
            ".buildkite.yml", ".buildkite.yaml", "appveyor.yml", ".appveyor.yml",
            ".pre-commit-config.yaml", ".pre-commit-config.yml", ".devcontainer.json",
            "lefthook.yml", "lefthook.yaml", ".lefthook.yml", ".lefthook.yaml",
            ".config/lefthook.yml", ".config/lefthook.yaml", "lefthook-local.yml",
            ".lfsconfig", ".gitmodules")
# Files that change what git shows of the repository (attributes: filters and line endings
# of a checkout; mailmap: the names ``git log`` prints) and who reviews what (CODEOWNERS):
# org-admins' as CI definitions are. Attributes and CODEOWNERS count in any directory
# outside environments/ (git and forges read them there too), the mailmap at the top.
ADMIN_FILE_NAMES = (".gitattributes", "codeowners")
ADMIN_TOP_FILES = (".mailmap",)
# Nor may these be inside an agent directory, where any developer could write them and a
# promotion would carry them to production: attributes (export-subst, filters, eol) change
# what git archive and checkouts of production deliver after QA approved the blobs.
NOT_IN_AGENTS = (".gitattributes", ".gitmodules", "codeowners")


def allowed(member: Member, action: str) -> bool:
    return bool(member.roles & PERMISSIONS[action])


_PLURAL = {"developer": "developers", "qa": "QA members", "org-admin": "org-admins"}


def who_may(action: str) -> str:
    return " or ".join(_PLURAL[r] for r in sorted(PERMISSIONS[action]))


def denial(member: Member, action: str) -> str:
    roles = ", ".join(sorted(member.roles))
    return (f"{member.id} ({roles}) may not {DESCRIPTIONS[action]}; only "
            f"{who_may(action)} may")


class Kind(StrEnum):
    """What a path is for the rules (a ``str``: it compares and prints as its value)."""

    ENV = "env"  # environments/<environment>/<agent>/...
    APPROVAL = "approval"  # approvals/<agent>.yaml
    POLICY = "policy"  # stageline.yaml
    SETTINGS = "settings"  # settings/...
    CI = "ci"  # CI definitions, shared hooks, repository settings
    OTHER = "other"  # anything else: README, docs
    INVALID = "invalid"  # a path the layout has no place for


@dataclass(frozen=True)
class Area:
    """What a repository path is, for the rules."""

    kind: Kind
    env: str | None = None
    agent: str | None = None
    reason: str | None = None


# Top-level names the rules give a meaning; a name another file system may store as one of
# them (case, ignorable code points, NFKC, trailing dots, 8.3 short names) is refused:
# a checkout there would put its files in the reserved place.
_RESERVED = (ENV_ROOT, APPROVALS, "settings", POLICY_FILE, *CI_DIRS, *CI_FILES,
             *ADMIN_TOP_FILES)


@functools.lru_cache(maxsize=4096)
def _alias(top: str) -> str | None:
    """The reserved top-level name ``top`` may stand for without being it, or None."""
    return next((r for r in _RESERVED if top != r and stands_for(top, folded(r))), None)


@functools.lru_cache(maxsize=4096)
def _admin_file(name: str) -> bool:
    return any(stands_for(name, n) for n in ADMIN_FILE_NAMES)


@functools.lru_cache(maxsize=16384)  # a push names the same files commit after commit
def classify(path: str) -> Area:
    parts = path.split("/")
    alias = _alias(parts[0])
    if alias is not None:
        if parts[0].casefold() == alias:
            # On a case-insensitive checkout (macOS, Windows) Environments/ is environments/.
            return Area(Kind.INVALID, reason=f"{parts[0]!r} differs only in case from {alias!r}")
        return Area(Kind.INVALID, reason=f"{yamlsafe.show(parts[0])} may stand for {alias!r} on "
                                      "some file systems")
    judged = parts[0] in (ENV_ROOT, APPROVALS)
    for i, part in enumerate(parts):
        why = name_problem(part, strict=judged or i == 0)
        if why:
            return Area(Kind.INVALID, reason=f"{why}, so it would not check out alike everywhere")
    if parts[0] == ENV_ROOT:
        if len(parts) < 4:
            return Area(Kind.INVALID, reason=f"only agent directories may be under {ENV_ROOT}/ "
                                          f"({ENV_ROOT}/<environment>/<agent>/...)")
        env, agent = parts[1], parts[2]
        if env not in ENVIRONMENTS:
            return Area(Kind.INVALID, reason=f"{env!r} is not an environment")
        if not is_agent_name(agent):
            return Area(Kind.INVALID, reason=f"{agent!r} is not a valid agent name")
        odd = next((p for p in parts[3:] for n in NOT_IN_AGENTS if stands_for(p, n)), None)
        if odd is not None:
            return Area(Kind.INVALID, reason=f"{yamlsafe.show(odd)} has no place in an agent "
                                          "directory: git and forges read it as a setting of "
                                          "the repository")
        return Area(Kind.ENV, env=env, agent=agent)
    if parts[0] == APPROVALS:
        name = parts[1] if len(parts) == 2 else ""
        agent = name.removesuffix(".yaml")
        if len(parts) != 2 or not name.endswith(".yaml") or not is_agent_name(agent):
            return Area(Kind.INVALID, reason=f"{APPROVALS}/ holds only <agent>.yaml files")
        return Area(Kind.APPROVAL, agent=agent)
    if path == POLICY_FILE:
        return Area(Kind.POLICY)
    if parts[0] == "settings":
        return Area(Kind.SETTINGS)
    if parts[0] in CI_DIRS or path in CI_FILES or path in ADMIN_TOP_FILES \
            or _admin_file(parts[-1]):
        return Area(Kind.CI)
    return Area(Kind.OTHER)


def classify_directory(path: str, tree: str, empty_tree: str) -> Area | None:
    """What a directory's own entry (``diff-tree -t``) is for the rules: invalid when the
    layout has no place for a directory there, or it is empty under environments/ or
    approvals/ (git keeps no empty directories: such a tree was made by hand, and it
    changes a tree id that no file change explains); None when its files say all."""
    parts = path.split("/")
    alias = _alias(parts[0])
    if alias is not None:
        return classify(path + "/")
    if parts[0] not in (ENV_ROOT, APPROVALS):
        return None
    if tree == empty_tree:
        return Area(Kind.INVALID, reason="an empty directory; git keeps none, so it was made by "
                                      "hand")
    if parts[0] == APPROVALS:
        return Area(Kind.INVALID, reason=f"{APPROVALS}/ holds only <agent>.yaml files") \
            if len(parts) > 1 else None
    if len(parts) >= 2 and parts[1] not in ENVIRONMENTS:
        return Area(Kind.INVALID, reason=f"{parts[1]!r} is not an environment")
    if len(parts) >= 3 and not is_agent_name(parts[2]):
        return Area(Kind.INVALID, reason=f"{parts[2]!r} is not a valid agent name")
    if len(parts) == 3:
        return Area(Kind.ENV, env=parts[1], agent=parts[2])
    return None


# -- judging pushed commits (the server's rules, §7) ------------------------------

ACTION_TRAILER = trailers.ACTION
AGENT_TRAILER = trailers.AGENT
ACTOR_TRAILER = trailers.ACTOR
RESTORES_TRAILER = trailers.RESTORES


@dataclass(frozen=True)
class Violation:
    """A refused change: which commit, which path, which rule, and how to do it right."""

    commit: str | None
    path: str | None
    rule: str
    fix: str

    def line(self) -> str:
        where = " ".join(x for x in ((self.commit or "")[:12], self.path or "") if x)
        return f"{where + ': ' if where else ''}{self.rule}; {self.fix}."


@dataclass(frozen=True)
class PathChange:
    path: str
    old_mode: str
    new_mode: str
    new_oid: str = ""


class ChangedPath(Protocol):
    """A changed path as the rules read it: a ``PathChange``, or the walk's own change."""

    @property
    def path(self) -> str: ...
    @property
    def old_mode(self) -> str: ...
    @property
    def new_mode(self) -> str: ...
    @property
    def new_oid(self) -> str: ...


@dataclass(frozen=True)
class CommitFacts:
    """What the rules need to know about one commit, gathered by the caller in batches.

    ``trees`` maps ``(env, agent)`` to the agent's tree id at this commit (None
    when absent), for every agent the commit touches; ``approvals`` the approval
    record at this commit for those whose staging, production or approval it
    touches; ``policy_blob`` the new ``stageline.yaml`` when the commit changes it;
    ``restored`` the production tree at the ``Stageline-Restores`` commit, with
    ``restore_problem`` saying why that commit cannot be restored from, if it cannot.
    ``agents`` is ``touched(changes)``.
    """

    oid: str
    parents: int
    author_email: str
    trailers: dict[str, str]
    changes: tuple[ChangedPath, ...]
    agents: dict[str, set[str]]
    trees: dict[tuple[str, str], str | None]
    approvals: dict[str, Approval | str | None]
    policy_blob: bytes | None = None
    # the record at the first parent, for each agent whose record the commit changes
    previous_approvals: dict[str, Approval | str | None] = field(default_factory=dict)
    # (path, what it looks like) for each changed file under environments/ or settings/
    # holding a secret by validation's patterns
    secrets: tuple[tuple[str, str], ...] = ()
    branch: str = ""  # the branch the commit enters, as refs/heads/<name>
    # the server's branches before the push (short names, lowercased)
    server_branches: frozenset[str] = frozenset()
    # the clock windows are judged by: the server's at push time (verify: its machine's);
    # None judges no window
    now: datetime | None = None
    restored: dict[str, str | None] | None = None
    restore_problem: str | None = None
    # (path or None, why): objects git's own tools read in more than one way (fsck.py)
    malformed: tuple[tuple[str | None, str], ...] = ()
    empty_tree: str = ""  # the id of the empty tree in this repository's hash


def agent_directory(change: ChangedPath) -> tuple[str, str] | None:
    """``(environment, name)`` when ``change`` is the own entry of a directory
    ``environments/<environment>/<name>`` (a walk with trees lists one for each
    directory holding a change); the names are not checked."""
    if TREE_MODE not in (change.old_mode, change.new_mode):
        return None
    parts = change.path.split("/")
    return (parts[1], parts[2]) if len(parts) == AGENT_DEPTH + 1 and parts[0] == ENV_ROOT \
        else None


def touched(changes: Iterable[ChangedPath]) -> dict[str, set[str]]:
    """The agents a commit touches, by area: development/staging/production/approval.

    A walk with trees also lists the directories holding each change: an agent
    directory's own entry names its agent (a walk cut at that depth lists no file
    in it), any other directory's entry is nobody's file.
    """
    result: dict[str, set[str]] = {}
    seen: set[tuple[str, ...]] = set()
    for change in changes:
        path = change.path
        if TREE_MODE in (change.old_mode, change.new_mode):
            if agent_directory(change) is None:
                continue
            path += "/"  # classified as the files in it are
        # Files of one agent directory all classify alike: classify each directory once.
        parts = path.split("/", 3)
        prefix = (*parts[:3], str(len(parts))) if parts[0] == ENV_ROOT else (path,)
        if prefix in seen:
            continue
        seen.add(prefix)
        area = classify(path)
        if area.agent is None:
            continue
        key = area.env if area.kind == "env" else "approval"
        result.setdefault(key or "approval", set()).add(area.agent)
    return result


def judge_commit(facts: CommitFacts, policy: Policy, pusher: Member | None) -> list[Violation]:
    """Every rule of §4 and §7 a commit breaks, judged against its first parent.

    ``pusher`` None means the pusher is not checked: ``verify`` without
    ``--pusher``, or a push by a service account that acts for members. The author
    always is, so such a push needs an author who holds each role, an approval's
    ``marked_by`` must be its author, and separation of duties holds on the author.
    """
    out: list[Violation] = []

    def bad(path: str | None, rule: str, fix: str) -> None:
        out.append(Violation(facts.oid, path, rule, fix))

    for path, why in facts.malformed:
        bad(path, why, "recreate the commit with a standard git client")
    if facts.malformed:
        return out  # git's tools read such objects in more than one way: nothing to judge
    author = policy.member_by_email(facts.author_email)
    if author is None:
        bad(None, f"the author {facts.author_email} is not a member of {policy.organization}",
            "commit with the email stageline.yaml lists for you")
        return out
    people = [author] + ([pusher] if pusher is not None and pusher.id != author.id else [])
    merge = facts.parents > 1
    needed: dict[str, str] = {}  # path → action

    for change in facts.changes:
        if TREE_MODE in (change.old_mode, change.new_mode):
            # A directory's own entry (diff-tree -t): its tree id is the state a checkout
            # reads, so a change of an agent directory is judged even when no file line
            # explains it.
            found = _directory_area(change, facts.empty_tree)
            if found is None:
                continue
            area = found
        else:
            area = classify(change.path)
        deleted = change.new_mode == DELETED_MODE
        if area.kind == "invalid":
            top = change.path.split("/", 1)[0]
            fix = {ENV_ROOT: "keep files inside environments/<environment>/<agent>/",
                   APPROVALS: "approvals/ holds what 'stageline mark-ready' writes"
                   }.get(top, "rename it")
            bad(change.path, area.reason or "this path is not allowed", fix)
            continue
        if area.kind in ("env", "approval") and not deleted and change.new_mode not in \
                REGULAR_MODES and change.new_mode != TREE_MODE:
            kind = mode_name(change.new_mode)
            bad(change.path, f"this is {kind}; only regular files are allowed here",
                "replace it with a regular file")
            continue
        if area.kind == "env":
            if area.env != "development" and merge:
                bad(change.path, f"a merge commit may not change {area.env}",
                    "promote in a linear commit on the branch with 'stageline promote'")
                continue
            needed[change.path] = {"development": EDIT_DEVELOPMENT, "staging": PROMOTE_STAGING,
                                   "production": PROMOTE_PRODUCTION}[area.env or ""]
            if area.env == "production" and facts.trailers.get(RESTORES_TRAILER):
                needed[change.path] = ROLLBACK
        elif area.kind == "approval":
            if merge:
                bad(change.path, "a merge commit may not change approvals",
                    "QA marks ready in a linear commit with 'stageline mark-ready'")
                continue
            if not deleted or area.agent not in facts.agents.get("staging", ()):
                needed[change.path] = MARK_READY  # a mark, or a mark withdrawn
        elif area.kind == "policy":
            needed[change.path] = EDIT_POLICY
            if deleted:
                bad(change.path, "stageline.yaml may not be deleted", "keep the policy")
            elif change.new_mode not in REGULAR_MODES:
                bad(change.path, f"stageline.yaml is {mode_name(change.new_mode)}; the policy "
                                 "is a regular file", "keep stageline.yaml a file")
            elif facts.policy_blob is not None:
                problem = _policy_problem(facts.policy_blob, facts.branch, policy,
                                          facts.server_branches)
                if problem:
                    bad(change.path, problem, "push a valid stageline.yaml that keeps "
                                              "protecting the branch")
        else:
            needed[change.path] = {"settings": EDIT_SETTINGS, "ci": EDIT_CI}.get(area.kind,
                                                                                  EDIT_OTHER)

    for path, action in needed.items():
        for person in people:
            if not allowed(person, action):
                who = "author" if person is author else "pusher"
                bad(path, f"the {who} " + denial(person, action),
                    f"ask one of the {who_may(action)} to do it")

    if not merge:
        agents = facts.agents
        for agent in sorted(agents.get("staging", ())):
            _judge_staging(facts, agent, bad)
        for agent in sorted(agents.get("production", ())):
            _judge_production(facts, agent, author, pusher, policy, bad)
        for agent in sorted(agents.get("approval", ())):
            _judge_approval(facts, agent, author, pusher, agents, bad)
    if not merge and facts.now is not None:
        for target in ("staging", "production"):
            if facts.agents.get(target) and policy.windows.get(target):
                _judge_window(facts, target, author, pusher, policy, bad)
    for path, label in facts.secrets:
        bad(path, f"this looks like {label}, and a secret pushed once stays in the history",
            "take it out of the commit before pushing, rotate it, and refer to it as "
            "{secret: NAME} or ${settings.NAME}")
    _judge_trailers(facts, author, bad)
    return _merged(out)


def _merged(violations: list[Violation]) -> list[Violation]:
    """One line per rule broken: the same rule, broken by many paths of one commit (every
    file of an agent directory a developer may not change, every file under a misnamed
    directory), is one violation naming the first path and how many more."""
    paths: dict[tuple[str | None, str, str], list[str | None]] = {}
    for v in violations:
        paths.setdefault((v.commit, v.rule, v.fix), []).append(v.path)
    return [Violation(commit, found[0], rule if len(found) == 1 else
                      f"{rule} (and {len(found) - 1} more path{'s' if len(found) > 2 else ''})",
                      fix) for (commit, rule, fix), found in paths.items()]


def _directory_area(change: ChangedPath, empty_tree: str) -> Area | None:
    """The area of a directory's own entry: as ``classify_directory`` says when it is a
    directory in the commit; an agent's when an agent directory is removed."""
    if change.new_mode == TREE_MODE:
        return classify_directory(change.path, change.new_oid, empty_tree)
    found = agent_directory(change)
    if found and found[0] in ENVIRONMENTS and is_agent_name(found[1]):
        return Area(Kind.ENV, env=found[0], agent=found[1])
    return None


def _policy_problem(blob: bytes, branch: str, judging: Policy,
                    server_branches: frozenset[str]) -> str | None:
    """Why a pushed policy may not replace the one of ``branch``: it is invalid; it no
    longer protects the branch it is pushed to (protection is a ratchet: no push, an
    org-admin's included, switches the gate off for the branch it enters); or it protects
    a branch that exists already, whose history no rule judged (protecting it would adopt
    whatever anyone put there while it was nobody's)."""
    from stageline.policy import PolicyError, parse_policy

    try:
        policy = parse_policy(blob)
    except PolicyError as exc:
        return f"the new policy is invalid ({exc.message.rstrip('.')})"
    if branch and not policy.is_protected(branch):
        return (f"the new policy stops protecting {branch.removeprefix('refs/heads/')}, the "
                "branch it is pushed to; protection is not withdrawn by a push")
    adopted = [b for b in policy.protected_branches if b.lower() in server_branches
               and not judging.is_protected(f"refs/heads/{b}")]
    dropped = [b for b in judging.protected_branches if b.lower() in server_branches
               and not policy.is_protected(f"refs/heads/{b}")]
    if dropped:
        return (f"the new policy stops protecting {dropped[0]}, which exists on the server; "
                "protection is not withdrawn by a push")
    if adopted:
        return (f"the new policy protects {adopted[0]}, which exists already (a branch, or a "
                "ref git reads in its place) with history no rule judged; delete it first, "
                "then protect the name and create the branch as an org-admin")
    return None


def _judge_staging(facts: CommitFacts, agent: str, bad: Any) -> None:
    path = f"{ENV_ROOT}/staging/{agent}"
    if facts.trees.get(("staging", agent)) != facts.trees.get(("development", agent)):
        bad(path, "staging must be an exact copy of development in the same commit",
            f"run 'stageline promote {agent} --to staging'")
    if facts.approvals.get(agent) is not None:
        bad(f"{APPROVALS}/{agent}.yaml", "a promotion to staging must delete the agent's approval",
            f"run 'stageline promote {agent} --to staging'")


def _judge_production(facts: CommitFacts, agent: str, author: Member, pusher: Member | None,
                      policy: Policy, bad: Any) -> None:
    path = f"{ENV_ROOT}/production/{agent}"
    production = facts.trees.get(("production", agent))
    if facts.trailers.get(RESTORES_TRAILER):
        # (a state without the agent is one too: an org-admin may take an agent out of
        # production alone, keeping staging approved; faq.md)
        restored = (facts.restored or {}).get(agent)
        if facts.restore_problem:
            bad(path, facts.restore_problem, f"run 'stageline rollback {agent} --to REV' with an "
                "earlier commit of this branch")
        elif restored != production:
            bad(path, "the rollback does not restore production as it was at the "
                      f"{RESTORES_TRAILER} commit",
                f"run 'stageline rollback {agent} --to REV'")
        return
    staging = facts.trees.get(("staging", agent))
    if production != staging:
        bad(path, "production must be an exact copy of staging in the same commit",
            f"run 'stageline promote {agent} --to production'")
        return
    if production is None:
        return  # retired: staging and production both removed
    record = facts.approvals.get(agent)
    problem = approval.problem(record, agent, staging)
    if problem is None and isinstance(record, Approval):
        problem = approval.shortfall(record, policy.approvals_required,
                                     lambda member_id: _holds(policy, member_id, "qa"))
    if problem:
        bad(path, f"{problem}, so it may not go to production",
            f"QA runs 'stageline mark-ready {agent}', then 'stageline promote {agent} "
            "--to production'")
        return
    assert isinstance(record, Approval)
    if policy.separation_of_duties:
        for person in (author, pusher):
            if person is not None and person.id in record.markers:
                bad(path, f"{person.id} marked this staging tree ready and may not also push it "
                          "to production (separation of duties)",
                    "an org-admin who did not mark it pushes it")
                return


def _judge_window(facts: CommitFacts, target: str, author: Member, pusher: Member | None,
                  policy: Policy, bad: Any) -> None:
    """A push to ``target`` inside a deny window, or outside every allow window it lists,
    is refused, unless an org-admin, author and pusher, overrides it with a
    ``Stageline-Override: <reason>`` trailer. Rollbacks lower risk: never held back."""
    if target == "production" and facts.trailers.get(RESTORES_TRAILER):
        return
    assert facts.now is not None
    blocked = windows.blocking(list(policy.windows[target]), facts.now)
    if blocked is None:
        return
    path = f"{ENV_ROOT}/{target}/{sorted(facts.agents[target])[0]}"
    reason = facts.trailers.get(trailers.OVERRIDE, "").strip()
    admins = all(p is None or p.has("org-admin") for p in (author, pusher))
    if reason and admins:
        return
    rule = f"{target} is {blocked}"
    if reason:
        rule += "; only org-admins may override a window"
    bad(path, rule, "push when the window allows it, or an org-admin overrides it with a "
                    "'Stageline-Override: <reason>' trailer (stageline promote --override "
                    "REASON)")


def _holds(policy: Policy, member_id: str, role: str) -> bool:
    member = policy.member(member_id)
    return member is not None and member.has(role)


def _judge_approval(facts: CommitFacts, agent: str, author: Member, pusher: Member | None,
                    agents: dict[str, set[str]], bad: Any) -> None:
    """A commit to approvals/<agent>.yaml adds its author's own mark to the record of the
    staging tree of the same commit, or starts a new record holding only that mark;
    deletes the record in a promotion to staging; or withdraws its author's own mark."""
    path = f"{APPROVALS}/{agent}.yaml"
    record = facts.approvals.get(agent)
    before = facts.previous_approvals.get(agent)
    marks = before.marks if isinstance(before, Approval) and before.agent == agent else ()
    if pusher is not None and pusher.id != author.id:
        # The author email is the committer's word; the pusher is the server's. Without this,
        # a member could approve in a colleague's name and then ship it themself.
        bad(path, f"an approval authored by {author.id} is pushed by {pusher.id}",
            f"{author.id} pushes their own approval")
    if record is None:
        if agent in agents.get("staging", ()):
            return  # a promotion to staging starts the approval over
        if tuple(m.by for m in marks) == (author.id,):
            return  # its only marker withdraws their mark
        bad(path, "an approval may be deleted only by a promotion to staging, or withdrawn "
                  "by the QA member whose mark it alone holds",
            f"a developer runs 'stageline promote {agent} --to staging', or that QA member "
            f"runs 'stageline mark-ready {agent} --withdraw'")
        return
    if isinstance(record, str):
        bad(path, f"the approval is invalid ({record})", f"QA runs 'stageline mark-ready {agent}'")
        return
    if record.agent != agent:
        bad(path, f"the approval names another agent ({record.agent})",
            f"QA runs 'stageline mark-ready {agent}'")
        return
    if record.staging_tree != facts.trees.get(("staging", agent)):
        bad(path, "the approval is not for the staging tree of the same commit",
            f"QA runs 'stageline mark-ready {agent}' on the current staging")
        return
    earlier = marks if isinstance(before, Approval) and \
        before.staging_tree == record.staging_tree else ()
    added = record.marks[:-1] == earlier and record.marked_by == author.id
    mine = author.id in (m.by for m in earlier)
    withdrawn = mine and record.marks == tuple(m for m in earlier if m.by != author.id)
    if not (added or withdrawn):  # nothing else: each mark vouches for the record it made
        bad(path, f"the approval must add {author.id}'s own mark to the marks of the same "
                  "staging tree, left as they were (or start a new record holding only it)",
            f"QA runs 'stageline mark-ready {agent}' themself")


_ACTION_AREAS = {
    PROMOTE_STAGING: {"staging", "approval"},
    PROMOTE_PRODUCTION: {"production"},
    ROLLBACK: {"production"},
    MARK_READY: {"approval"},
    CREATE_AGENT: {"development"},
}


def _judge_trailers(facts: CommitFacts, author: Member, bad: Any) -> None:
    trailers = facts.trailers
    actor = trailers.get(ACTOR_TRAILER)
    if actor is not None and actor != author.id:
        bad(None, f"{ACTOR_TRAILER} claims {actor!r} but the author is {author.id}",
            "let the trailer name the author, or drop it")
    action = trailers.get(ACTION_TRAILER)
    agent = trailers.get(AGENT_TRAILER)
    if (trailers.get(RESTORES_TRAILER) is not None) != (action == ROLLBACK):
        bad(None, f"a rollback names what it restores ({RESTORES_TRAILER}), and only a rollback",
            "use 'stageline rollback' or drop the trailers")
    if action is None:
        if agent is not None:
            bad(None, f"{AGENT_TRAILER} without {ACTION_TRAILER}", "drop the trailer")
        return
    if action == INIT:
        if facts.parents:
            bad(None, f"{ACTION_TRAILER}: init is only for the first commit", "drop the trailer")
        return
    areas = _ACTION_AREAS.get(action)
    if areas is None:
        bad(None, f"{ACTION_TRAILER} {action!r} is not an action", "drop the trailer")
        return
    if agent is None or not is_agent_name(agent):
        bad(None, f"{ACTION_TRAILER}: {action} needs a valid {AGENT_TRAILER}",
            "let stageline make the commit")
        return
    main_area = {PROMOTE_STAGING: "staging", MARK_READY: "approval", CREATE_AGENT: "development"
                 }.get(action, "production")
    seen = facts.agents
    files = [c.path for c in facts.changes if TREE_MODE not in (c.old_mode, c.new_mode)]
    others = [path for path in files if (a := classify(path)).agent != agent
              or (a.env if a.kind == "env" else a.kind) not in areas]
    if others or agent not in seen.get(main_area, set()):
        bad(others[0] if others else None,
            f"the trailers claim {action} of {agent}, but the commit changes something else",
            "let stageline make the commit, or drop the trailers")
