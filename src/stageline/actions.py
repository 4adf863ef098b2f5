"""The workflow's actions: read the committed state → ask the rules → write one commit."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stageline import approval, rules, trailers, windows
from stageline.approval import Approval, Mark
from stageline.errors import Blocked, CheckFailed, PermissionDenied, RepositoryError, UsageError
from stageline.git.objects import Entry, short_ref
from stageline.git.store import Store
from stageline.git.walk import Change
from stageline.git.write import Identity
from stageline.layout import (
    AGENT_FILE,
    ENV_ROOT,
    EXECUTABLE_MODE,
    FILE_MODE,
    POLICY_FILE,
    REGULAR_MODES,
    SYMLINK_MODE,
    TREE_MODE,
    approval_path,
    check_agent_name,
    check_env,
    env_dir,
)
from stageline.policy import Member, PolicyError, parse_policy
from stageline.settings import parse_settings, settings_path
from stageline.sshkeys import PublicKey
from stageline.validation import Finding, errors, validate
from stageline.workspace import Workspace, on_branch, open_branch

if TYPE_CHECKING:
    from stageline.conversation import TestResult


@dataclass(frozen=True)
class Preview:
    """The commit an action would make (``--dry-run``): nothing of it is referenced."""

    ref: str
    parent: str | None
    tree: str
    author: Identity
    message: str
    changes: tuple[Change, ...]
    signed_with: str | None = None  # the fingerprint of the key git would sign with

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "parent": self.parent, "tree": self.tree,
                "author": {"name": self.author.name, "email": self.author.email},
                "message": self.message, "signed_with": self.signed_with,
                "changes": [{"path": c.path, "status": change_status(c)} for c in self.changes]}


def change_status(change: Change) -> str:
    return {"A": "added", "D": "deleted"}.get(change.status, "modified")


@dataclass(frozen=True)
class Outcome:
    """What an action did: the new commit, or None when there was nothing to do (or
    when it was a dry run, whose ``preview`` is the commit it would have made)."""

    commit: str | None
    summary: str
    action: str | None = None
    agent: str | None = None
    dry_run: bool = False
    preview: Preview | None = None
    next: str = ""  # what the workflow asks for after this commit, once it is pushed

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "agent": self.agent, "commit": self.commit,
                "summary": self.summary, "dry_run": self.dry_run,
                "would_commit": self.preview.to_json() if self.preview else None}


@dataclass(frozen=True)
class Plan:
    """An action decided and not yet made: every rule is applied while planning, so
    ``apply`` (make the commit) and ``preview`` (show it) cannot disagree on them.

    No ``changes`` means there is nothing to do, and ``summary`` says why.
    """

    action: str
    agent: str | None
    summary: str
    author: Identity | None = None
    message: str = ""
    changes: dict[str, Entry | None] = field(default_factory=dict)
    next: str = ""  # the next step of the workflow, said once the commit is made


def apply(ws: Workspace, plan: Plan) -> Outcome:
    """Make the planned commit on the workspace's branch."""
    if not plan.changes or plan.author is None:
        return Outcome(None, plan.summary, plan.action, plan.agent)
    key = _signing_key(ws, plan.author)
    commit = ws.store.apply(ws.ref, ws.head, plan.changes, plan.message, plan.author,
                            sign=key is not None)
    return Outcome(commit, plan.summary if commit else "nothing to change.", plan.action,
                   plan.agent, next=plan.next if commit else "")


def preview(ws: Workspace, plan: Plan) -> Outcome:
    """The commit ``apply`` would make, without making it: no ref, index, working tree or
    journal changes. The objects of the new tree (trees, and the blobs of new files) are
    written to the object database unreferenced; ``git gc`` prunes them."""
    if not plan.changes or plan.author is None:
        return Outcome(None, plan.summary, plan.action, plan.agent, dry_run=True)
    base = ws.store.commit_tree_oid(ws.head)
    tree = ws.store.replace(base, plan.changes)
    if tree == base:
        return Outcome(None, "nothing to change.", plan.action, plan.agent, dry_run=True)
    ws.store.refuse_uncommitted(ws.ref, ws.head, list(plan.changes))
    key = _signing_key(ws, plan.author)
    subject = plan.message.partition("\n")[0]
    return Outcome(None, f"would commit '{subject}' on {short_ref(ws.ref)}.", plan.action,
                   plan.agent, dry_run=True,
                   preview=Preview(ws.ref, ws.head, tree, plan.author, plan.message,
                                   tuple(ws.store.diff_trees(base, tree)),
                                   key.fingerprint if key else None))


def _signing_key(ws: Workspace, author: Identity) -> PublicKey | None:
    """The key the commit will be signed with, when the policy requires signed actions
    (Blocked, before anything is written, when git cannot sign with one of the actor's)."""
    if ws.policy.signing.require == "none":
        return None
    from stageline.keys import signing_key

    actor = ws.policy.member_by_email(author.email)
    if actor is None:
        raise Blocked(f"{author.email} is not a member's email; nothing to sign for.")
    return signing_key(ws.store, ws.policy, actor)


def run_plan(ws: Workspace, plan: Plan, dry_run: bool = False) -> Outcome:
    return preview(ws, plan) if dry_run else apply(ws, plan)


def _require(member: Member, action: str) -> None:
    if not rules.allowed(member, action):
        raise PermissionDenied(rules.denial(member, action) + ".")


def _message(subject: str, action: str, actor: Member, agent: str | None = None,
             extra: dict[str, str] | None = None) -> str:
    return f"{subject}\n\n{trailers.block(action, agent, actor.id, extra)}\n"


def _plan(action: str, agent: str, actor: Member, changes: dict[str, Entry | None],
          message: str, done: str, then: str = "") -> Plan:
    return Plan(action, agent, done, Identity(actor.name, actor.email), message, changes, then)


@dataclass(frozen=True)
class AgentSource:
    """The files of one agent directory, from a tree or from the working tree."""

    modes: dict[str, str]
    read: Callable[[str], bytes]


def committed_source(ws: Workspace, tree: str) -> AgentSource:
    return _source_of(ws, ws.store.files(tree))


def _source_of(ws: Workspace, listing: list[tuple[str, str, str]]) -> AgentSource:
    oids = {path: oid for _mode, oid, path in listing}
    return AgentSource({path: mode for mode, _oid, path in listing},
                       lambda path: ws.store.read_blob(oids[path]))


def worktree_source(root: Path) -> AgentSource:
    modes = {}
    for item in sorted(root.rglob("*")):
        if item.is_symlink():
            modes[item.relative_to(root).as_posix()] = SYMLINK_MODE
        elif item.is_file():
            executable = os.access(item, os.X_OK)
            modes[item.relative_to(root).as_posix()] = EXECUTABLE_MODE if executable else FILE_MODE
    return AgentSource(modes, lambda path: (root / path).read_bytes())


def environment_settings(ws: Workspace, env: str, worktree: bool = False) -> dict[str, Any]:
    """``settings/<env>.yaml`` (committed, or on disk with ``worktree``); an unusable file
    is a configuration error (exit 5)."""
    path = settings_path(env)
    if worktree and ws.store.work_tree is not None:
        file = ws.store.work_tree / path
        data = file.read_bytes() if file.is_file() else None
    else:
        data = ws.store.blob_at(ws.head, path)
    values, problem = parse_settings(data, env)
    if problem:
        raise RepositoryError(f"{problem} Ask an org-admin to fix it.")
    return values


def findings(ws: Workspace, agent: str, source: AgentSource, env: str,
             worktree: bool = False) -> list[Finding]:
    """Every finding for an agent, its ``${settings.*}`` resolved against ``env``."""
    return validate(agent, source.modes, source.read,
                    environment_settings(ws, env, worktree), env)


def agent_sources(ws: Workspace, env: str, agent: str | None,
                  worktree: bool = False) -> list[tuple[str, AgentSource]]:
    """The agents of an environment (or one of them), committed or on disk."""
    check_env(env)
    if agent is not None:
        check_agent_name(agent)
    if worktree:
        if ws.store.work_tree is None:
            raise UsageError("--worktree needs a clone with a working tree.")
        base = ws.store.work_tree / ENV_ROOT / env
        names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        found = [(n, worktree_source(base / n)) for n in names if agent in (None, n)]
    else:
        # One listing of the whole environment, not one per agent.
        where = f"{ENV_ROOT}/{env}" + (f"/{agent}" if agent else "")
        tree = ws.store.tree_at(ws.head, where)
        listing = ws.store.files(tree) if tree else []
        if agent:
            found = [(agent, _source_of(ws, listing))] if tree else []
        else:
            by_agent: dict[str, list[tuple[str, str, str]]] = {}
            for mode, oid, path in listing:
                name, _, rest = path.partition("/")
                if rest:  # files directly in environments/<env>/ are no agents
                    by_agent.setdefault(name, []).append((mode, oid, rest))
            found = [(n, _source_of(ws, files)) for n, files in sorted(by_agent.items())]
    if agent is not None and not found:
        raise Blocked(f"{agent} is not in {env}.")
    return found


def conversation_tests(source: AgentSource) -> list[TestResult]:
    """Run the agent's ``tests/*.yaml`` against its flows (no network, no model)."""
    from stageline.conversation import run_tests

    return run_tests({p: source.read(p) for p in source.modes if p.endswith((".yaml", ".yml"))
                      and source.modes[p] in REGULAR_MODES})


def _validated(ws: Workspace, agent: str, env: str, tree: str, target: str) -> AgentSource:
    """The agent's files, when they pass validation for ``target``; else exit 1."""
    source = committed_source(ws, tree)
    problems = errors(findings(ws, agent, source, target))
    if problems:
        listed = "; ".join(p.text(agent) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckFailed(f"{agent} in {env} is not valid for {target}: {listed}{more}; "
                          f"fix the agent, or the values in {settings_path(target)}.")
    return source


def promote(ws: Workspace, actor: Member, agent: str, target: str) -> Outcome:
    return apply(ws, plan_promote(ws, actor, agent, target))


def plan_promote(ws: Workspace, actor: Member, agent: str, target: str,
                 override: str | None = None, force_reship: bool = False) -> Plan:
    check_agent_name(agent)
    if target in ("staging", "production"):
        _refuse_uncommitted_source(ws, "development" if target == "staging" else "staging",
                                   agent)
    if target == "staging":
        return _promote_to_staging(ws, actor, agent, override)
    if target == "production":
        return _promote_to_production(ws, actor, agent, override, force_reship)
    raise UsageError(f"cannot promote to {target!r}; use --to staging or --to production.")


def uncommitted(ws: Workspace, env: str, agent: str | None) -> list[str]:
    """Uncommitted changes in a clone under an agent's directory (or the environment's)."""
    if not ws.store.checks_out(ws.ref):
        return []
    where = env_dir(env, agent) if agent else f"{ENV_ROOT}/{env}"
    return ws.store.dirty_paths([where], ws.head)


def _refuse_uncommitted_source(ws: Workspace, env: str, agent: str) -> None:
    """A promotion copies the committed state: changes not committed would be left behind
    without a word, and "nothing to do" would hide them."""
    dirty = uncommitted(ws, env, agent)
    if dirty:
        more = f" (and {len(dirty) - 1} more)" if len(dirty) > 1 else ""
        raise Blocked(f"{env}/{agent} has uncommitted changes ({dirty[0]}{more}); commit them "
                      "first: promotion copies the committed state.")


def window_extra(ws: Workspace, actor: Member, target: str, override: str | None,
                 now: datetime | None = None) -> dict[str, str]:
    """The trailer a push to ``target`` needs now: none when no window holds it back; the
    org-admin's ``Stageline-Override`` when one does and they give a reason; otherwise the
    push is refused ahead of the server (exit 4), naming the window and when it ends."""
    gated = ws.policy.windows.get(target)
    blocked = windows.blocking(list(gated), now or datetime.now(UTC)) if gated else None
    if blocked is None:
        return {}
    if not override or not override.strip():
        raise Blocked(f"{target} is {blocked}; wait for it, or an org-admin pushes through it "
                      "with --override REASON.")
    if not actor.has("org-admin"):
        raise PermissionDenied(f"{actor.id} may not override a window; only org-admins may.")
    return {trailers.OVERRIDE: " ".join(override.split())}


def _promote_to_staging(ws: Workspace, actor: Member, agent: str,
                        override: str | None = None) -> Plan:
    _require(actor, rules.PROMOTE_STAGING)
    dev = ws.tree("development", agent)
    if dev is None:
        raise Blocked(f"{agent} is not in development; create it with 'stageline agent new "
                      f"{agent}' first.")
    if ws.tree("staging", agent) == dev:
        return Plan(rules.PROMOTE_STAGING, agent,
                    f"staging already equals development for {agent}; nothing to do.")
    _validated(ws, agent, "development", dev, "staging")
    changes: dict[str, Entry | None] = {
        env_dir("staging", agent): Entry(TREE_MODE, dev),
        approval_path(agent): None,
    }
    extra = window_extra(ws, actor, "staging", override)
    message = _message(f"Promote {agent} to staging", rules.PROMOTE_STAGING, actor, agent,
                       extra)
    return _plan(rules.PROMOTE_STAGING, agent, actor, changes, message,
                 f"promoted {agent} to staging.",
                 f"QA tests it and runs 'stageline mark-ready {agent}'")


def _promote_to_production(ws: Workspace, actor: Member, agent: str,
                           override: str | None = None, force_reship: bool = False) -> Plan:
    _require(actor, rules.PROMOTE_PRODUCTION)
    staging = ws.tree("staging", agent)
    if staging is None:
        raise Blocked(f"{agent} is not in staging; promote it with 'stageline promote {agent} "
                      "--to staging' first.")
    if ws.tree("production", agent) == staging:
        return Plan(rules.PROMOTE_PRODUCTION, agent,
                    f"production already equals staging for {agent}; nothing to do.")
    record = ws.approval(agent)
    problem = approval.problem(record, agent, staging)
    if problem is None and isinstance(record, Approval):
        problem = approval.shortfall(record, ws.policy.approvals_required,
                                     lambda m: (who := ws.policy.member(m)) is not None
                                     and who.has("qa"))
    if problem:
        raise Blocked(f"{problem}; QA must run 'stageline mark-ready {agent}' first.")
    assert isinstance(record, Approval)
    if ws.policy.separation_of_duties and actor.id in record.markers:
        raise PermissionDenied(f"{actor.id} marked this staging tree of {agent} ready and may not "
                               "also push it to production; an org-admin who did not mark it "
                               "must.")
    if not force_reship and _rolled_back_from(ws, agent) == staging:
        raise Blocked(f"production of {agent} was rolled back from this staging tree; promote "
                      "a fix to staging, or pass --force-reship to ship it again.")
    _validated(ws, agent, "staging", staging, "production")
    changes: dict[str, Entry | None] = {env_dir("production", agent): Entry(TREE_MODE, staging)}
    extra = window_extra(ws, actor, "production", override)
    message = _message(f"Push {agent} to production", rules.PROMOTE_PRODUCTION, actor, agent,
                       extra)
    return _plan(rules.PROMOTE_PRODUCTION, agent, actor, changes, message,
                 f"promoted {agent} to production.")


def _rolled_back_from(ws: Workspace, agent: str) -> str | None:
    """The tree production was rolled back from, when its last change is a rollback."""
    from stageline.history import history

    last = history(ws, agent, "production", limit=1)
    if not last or last[0].action != rules.ROLLBACK:
        return None
    return ws.store.tree_at(f"{last[0].commit}~1", env_dir("production", agent))


def mark_ready(ws: Workspace, actor: Member, agent: str) -> Outcome:
    return apply(ws, plan_mark_ready(ws, actor, agent))


def plan_mark_ready(ws: Workspace, actor: Member, agent: str) -> Plan:
    check_agent_name(agent)
    _require(actor, rules.MARK_READY)
    staging = ws.tree("staging", agent)
    if staging is None:
        raise Blocked(f"{agent} is not in staging; a developer must promote it first.")
    current = ws.approval(agent)
    earlier: tuple[Mark, ...] = ()
    if approval.problem(current, agent, staging) is None and isinstance(current, Approval):
        if actor.id in current.markers:
            return Plan(rules.MARK_READY, agent,
                        f"{actor.id} already marked this staging tree of {agent}; nothing to "
                        "do.")
        earlier = current.marks  # a mark of the same tree adds to its record
    # QA's gate: the staging content must be valid for staging and pass its conversation
    # tests; the approval records the tests' summary.
    source = _validated(ws, agent, "staging", staging, "staging")
    results = conversation_tests(source)
    failed = [r for r in results if not r.passed]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(results)} conversation tests of {agent} fail "
                          f"in staging (first: {failed[0].name}); see 'stageline test {agent} "
                          "--env staging'.")
    marked_at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    text = approval.text(agent, staging, (*earlier, Mark(actor.id, marked_at)),
                         passed=len(results))
    changes: dict[str, Entry | None] = {
        approval_path(agent): Entry(FILE_MODE, ws.store.hash_blob(text.encode())),
    }
    message = _message(f"Mark {agent} Ready for Production", rules.MARK_READY, actor, agent)
    marks, required = len(earlier) + 1, ws.policy.approvals_required
    then = (f"an org-admin runs 'stageline promote {agent} --to production'"
            if marks >= required else
            f"another QA member runs 'stageline mark-ready {agent}' ({marks} of {required} "
            "marks)")
    return _plan(rules.MARK_READY, agent, actor, changes, message,
                 f"marked {agent} Ready for Production.", then)


def plan_withdraw(ws: Workspace, actor: Member, agent: str) -> Plan:
    """QA takes back their own mark: the record without it, or no record when it was the
    only one (one commit, as the hook allows a QA member to make)."""
    check_agent_name(agent)
    _require(actor, rules.MARK_READY)
    current = ws.approval(agent)
    if not isinstance(current, Approval) or actor.id not in current.markers:
        return Plan(rules.MARK_READY, agent,
                    f"{actor.id} has no mark on {agent} to withdraw; nothing to do.")
    kept = tuple(m for m in current.marks if m.by != actor.id)
    entry = (Entry(FILE_MODE, ws.store.hash_blob(
        approval.text(agent, current.staging_tree, kept, current.tests_passed or 0).encode()))
             if kept else None)
    message = _message(f"Withdraw {actor.id}'s mark of {agent}", rules.MARK_READY, actor, agent)
    return _plan(rules.MARK_READY, agent, actor, {approval_path(agent): entry}, message,
                 f"withdrew {actor.id}'s mark of {agent}.")


def rollback(ws: Workspace, actor: Member, agent: str, rev: str | None) -> Outcome:
    return apply(ws, plan_rollback(ws, actor, agent, rev))


def plan_rollback(ws: Workspace, actor: Member, agent: str, rev: str | None) -> Plan:
    """Restore production to its tree at ``rev``, an earlier state of the branch (default:
    the previous production version)."""
    from stageline.history import previous_production

    check_agent_name(agent)
    _require(actor, rules.ROLLBACK)
    if rev is None:
        version = previous_production(ws, agent)
        if version is None:
            raise Blocked(f"{agent} has no earlier production version to roll back to.")
        target, tree = version.commit, version.tree
    else:
        resolved = ws.store.resolve(rev)
        if resolved is None or not on_branch(ws, resolved):
            raise UsageError(f"{rev!r} is not an earlier state of the branch; pick a commit from "
                             f"'stageline history {agent}'.")
        target, tree = resolved, ws.store.tree_at(resolved, env_dir("production", agent))
        if tree is None:
            raise Blocked(f"{agent} was not in production at {rev}; pick a commit from "
                          f"'stageline history {agent}'.")
    if ws.tree("production", agent) == tree:
        return Plan(rules.ROLLBACK, agent, f"production of {agent} already is as it was at "
                                           f"{target[:12]}; nothing to do.")
    assert tree is not None
    changes: dict[str, Entry | None] = {env_dir("production", agent): Entry(TREE_MODE, tree)}
    message = _message(f"Roll back {agent} in production to {target[:12]}", rules.ROLLBACK,
                       actor, agent, {rules.RESTORES_TRAILER: target})
    return _plan(rules.ROLLBACK, agent, actor, changes, message,
                 f"rolled {agent} back to its production of {target[:12]}.")


def scaffold(agent: str) -> dict[str, bytes]:
    """The smallest valid agent."""
    return {
        AGENT_FILE: (
            f"name: {agent}\n"
            f"description: {agent.replace('-', ' ').capitalize()}\n"
            "model: {provider: openai, name: gpt-4o-mini}\n"
            "system_prompt: prompts/system.md\n"
        ).encode(),
        "prompts/system.md": (
            f"You are {agent}. Describe here what the agent does, its tone, and what it must "
            "never do.\n"
        ).encode(),
    }


def new_agent(ws: Workspace, actor: Member, agent: str) -> Outcome:
    return apply(ws, plan_new_agent(ws, actor, agent))


def plan_new_agent(ws: Workspace, actor: Member, agent: str) -> Plan:
    check_agent_name(agent)
    _require(actor, rules.CREATE_AGENT)
    if ws.tree("development", agent) is not None:
        raise Blocked(f"{agent} already exists in development; edit it there.")
    tree = ws.store.build_tree(scaffold(agent))
    changes: dict[str, Entry | None] = {env_dir("development", agent): Entry(TREE_MODE, tree)}
    message = _message(f"Create agent {agent}", rules.CREATE_AGENT, actor, agent)
    return _plan(rules.CREATE_AGENT, agent, actor, changes, message,
                 f"created {agent} in development.",
                 f"edit environments/development/{agent}/, commit, and run 'stageline promote "
                 f"{agent} --to staging'")


def init_organization(path: str, org: str, admin: str, email: str, name: str | None,
                      branch: str = "main", adopt: bool = False) -> Outcome:
    """A new organization repository: the policy, a README, one first commit. With
    ``adopt``, an existing repository instead: one commit adding the policy on its
    current branch."""
    text = yaml.safe_dump({
        "organization": org,
        "protected_branches": [branch],
        "members": {admin: {"name": name or admin, "email": email, "roles": ["org-admin"]}},
    }, sort_keys=False, allow_unicode=True)
    try:
        policy = parse_policy(text.encode())
    except PolicyError as exc:
        raise UsageError(f"cannot create the organization: {exc.message}") from None
    actor = policy.members[admin]
    existing = os.path.exists(os.path.join(path, ".git")) or (
        os.path.isdir(path) and os.path.exists(os.path.join(path, "HEAD")))
    if adopt:
        return _adopt(path, org, text, actor)
    if existing:
        raise Blocked(f"{path} is already a Git repository; add stageline to it with "
                      "'stageline init --adopt' (same options), or init a new directory.")
    store = Store.init(path, branch)
    readme = (
        f"# {org} agents\n\n"
        "This repository holds the organization's AI agents, managed with stageline.\n\n"
        "- `environments/development/<agent>/`: edited by developers\n"
        "- `environments/staging/<agent>/`: a copy of development, tested by QA\n"
        "- `environments/production/<agent>/`: a copy of QA-approved staging, pushed by "
        "org-admins\n"
        "- `approvals/<agent>.yaml`: QA's Ready for Production record\n\n"
        "Staging and production are never edited by hand: use `stageline promote`.\n"
    )
    changes: dict[str, Entry | None] = {
        POLICY_FILE: Entry(FILE_MODE, store.hash_blob(text.encode())),
        "README.md": Entry(FILE_MODE, store.hash_blob(readme.encode())),
    }
    message = _message(f"Create the {org} organization", rules.INIT, actor)
    commit = store.apply(f"refs/heads/{branch}", None, changes, message,
                         Identity(actor.name, actor.email))
    return Outcome(commit, f"created the {org} organization in {path}.", rules.INIT,
                   next=f"add members to {path}/{POLICY_FILE} and commit; 'stageline agent "
                        "new NAME' scaffolds an agent")


def _adopt(path: str, org: str, text: str, actor: Member) -> Outcome:
    """The policy added to an existing repository's current branch, by its first
    org-admin: an unborn branch gets the first commit (``init``), a branch with history a
    plain commit (an ``init`` trailer belongs to a first commit only)."""
    store, ref, head = open_branch(path)
    if head is not None and store.blob_at(head, POLICY_FILE) is not None:
        raise Blocked(f"{short_ref(ref)} already has a {POLICY_FILE}; this repository uses "
                      "stageline already.")
    subject = f"Adopt stageline for the {org} organization"
    message = _message(subject, rules.INIT, actor) if head is None else f"{subject}\n"
    commit = store.apply(ref, head, {POLICY_FILE: Entry(FILE_MODE, store.hash_blob(
        text.encode()))}, message, Identity(actor.name, actor.email))
    return Outcome(commit, f"added {POLICY_FILE} for the {org} organization to "
                           f"{short_ref(ref)}.", rules.INIT,
                   next=f"add members to {POLICY_FILE}, commit, and push {short_ref(ref)}")


def import_organization(store: Store, ref: str, files: dict[str, bytes]) -> str:
    """A first commit holding an organization's files, made by its first org-admin."""
    policy = parse_policy(files.get(POLICY_FILE, b""))
    admin = next((m for m in policy.members.values() if m.has("org-admin")), None)
    if admin is None:
        raise PolicyError(f"{POLICY_FILE} names no org-admin; the organization needs one.")
    changes: dict[str, Entry | None] = {
        path: Entry(FILE_MODE, store.hash_blob(data)) for path, data in files.items()}
    message = _message(f"Import the {policy.organization} organization", rules.INIT, admin)
    commit = store.apply(ref, store.resolve(ref), changes, message,
                         Identity(admin.name, admin.email))
    if commit is None:
        raise Blocked("there is nothing to import.")
    return commit
