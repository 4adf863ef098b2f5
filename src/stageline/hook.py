"""Server enforcement: the pre-receive hook and ``verify`` (§7).

stdin → ref updates → for each protected branch: the policy at its old tip, the
pusher, the shape of the update, then every new commit judged by
``rules.judge_commit`` on facts gathered in a few batched git calls.

This module is on the hook's start-up path: it imports only what judging needs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stageline import approval, rules
from stageline.approval import Approval
from stageline.errors import UsageError
from stageline.git import fsck
from stageline.git.objects import is_null_oid, looks_like_oid, short_ref
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.layout import (
    DELETED_MODE,
    ENV_ROOT,
    GITLINK_MODE,
    POLICY_FILE,
    PUSH_LOG,
    REGULAR_MODES,
    TREE_MODE,
    approval_path,
    collision,
    env_dir,
)
from stageline.policy import (
    DEFAULT_IDENTITY_ENV,
    Member,
    Policy,
    PolicyError,
    first_set,
    parse_policy,
)
from stageline.rules import Violation
from stageline.validation import secrets_in

if TYPE_CHECKING:
    from stageline.progress import Progress

MAX_LINES_SHOWN = 25
SCANNED = ("environments/", "settings/")  # where a pushed file may hold no secret
INDEXED_TREE = 8192  # bytes from which a tree's next version is checked against it
# A ref name holds no ASCII control character or space, but may hold any other character,
# Unicode spaces and line breaks (NBSP, NEL, U+2028) included.
_LINE_RE = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) ([^\x00-\x20\x7f]+)")


@dataclass(frozen=True)
class RefUpdate:
    old: str | None  # None: the ref is created
    new: str | None  # None: the ref is deleted
    ref: str


def parse_updates(text: str) -> list[RefUpdate]:
    """The pre-receive stdin: ``<old> <new> <ref>`` lines; anything else is refused.
    Lines end at a line feed only (a carriage return before it is dropped): ``splitlines``
    or a Unicode ``strip`` would cut or trim ref names that hold NEL, U+2028 or NBSP."""
    updates = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        match = _LINE_RE.fullmatch(line.strip(" \t\r"))
        if not match:
            raise UsageError(f"cannot read the ref update {line[:80]!r}.")
        old, new, ref = match.groups()
        updates.append(RefUpdate(None if is_null_oid(old) else old,
                                 None if is_null_oid(new) else new, ref))
    return updates


def pusher_from_env(policy: Policy, env: Mapping[str, str]) -> str | None:
    found = first_set(policy.identity_env, env)
    return found[1] if found else None


def pusher_problem(policy: Policy, who: str) -> Violation | None:
    """Why ``who`` may not push to a branch ``policy`` protects, or None.

    A member may; so may a service account with ``acts_for_members``, whose pushes
    are judged by each commit's author alone (``judge_commit`` with no pusher).
    """
    if policy.member(who) is not None or policy.pushes_for_members(who):
        return None
    if who in policy.service_accounts:
        return Violation(None, None, f"the pusher {who} is a service account of "
                                     f"{policy.organization} that may not push for members "
                                     "(acts_for_members is off)",
                         "push as a member, or an org-admin sets acts_for_members: true for "
                         f"{who} in stageline.yaml")
    return Violation(None, None, f"the pusher {who} is not a member of {policy.organization}",
                     "ask an org-admin to add you to stageline.yaml")


class Enforcer:
    """Judges ref updates of one repository; reads only, never writes objects or refs."""

    def __init__(self, store: Store, progress: Progress | None = None) -> None:
        self.store = store
        self.progress = progress  # verify shows it on a terminal; the hook has none
        self._default: tuple[str | None, str | None] | None = None
        self._bootstrap: bool | None = None
        self._policies: dict[str, Policy | str | None] = {}
        self._org: tuple[bool, list[Policy]] | None = None
        self._self_protected: dict[str, str] | None = None
        self._branches: dict[str, str] | None = None
        # The updates judged as protected branches (bootstrap included), as the push log
        # records them: what post-receive logs is exactly this.
        self.judged: list[dict[str, str | None]] = []

    # -- the policy that governs a ref -----------------------------------------

    def default_branch(self) -> tuple[str | None, str | None]:
        """The server's default branch and its tip."""
        if self._default is None:
            ref = self.store.head_ref()
            # Through the long-lived cat-file the checks use anyway: no rev-parse to start.
            found = self.store.objects([f"{ref}^{{commit}}"])[0] if ref else None
            self._default = (ref, found[0] if found and found[1] == "commit" else None)
        return self._default

    def branches(self) -> dict[str, str]:
        """The server's branches and their tips before the push (read once)."""
        if self._branches is None:
            self._branches = self.store.branches()
        return self._branches

    def use_default(self, ref: str | None, tip: str | None) -> None:
        """Take ``ref`` at ``tip`` as the server's default branch (``verify``, in a clone)."""
        self._default = (ref, tip)

    def bootstrapping(self) -> bool:
        """True while no branch of the server holds a stageline.yaml."""
        if self._bootstrap is None:
            tips = list(self.branches().values())
            infos = self.store.objects_info([f"{tip}:{POLICY_FILE}" for tip in tips])
            self._bootstrap = not any(info and info[1] == "blob" for info in infos)
        return self._bootstrap

    def policy_at(self, commit: str | None) -> Policy | str | None:
        if commit is None:
            return None
        if commit not in self._policies:  # the default tip is often the old tip too
            self._policies[commit] = self._read_policy(commit)
        return self._policies[commit]

    def _read_policy(self, commit: str) -> Policy | str | None:
        found = self.store.objects([f"{commit}:{POLICY_FILE}"])[0]
        if found is None or found[1] != "blob":
            return None
        if found[0] not in self._policies:  # many branches hold the same policy file
            try:
                self._policies[found[0]] = parse_policy(found[2])
            except PolicyError as exc:
                self._policies[found[0]] = exc.message.rstrip(".")
        return self._policies[found[0]]

    def self_protected(self) -> dict[str, str]:
        """The branches whose own tip's policy protects them, with their tips. Only such a
        branch's history was judged by the rules (a policy cannot make the unprotected
        branch it is pushed to protected, outside bootstrap), so only their policies
        speak for the organization."""
        if self._self_protected is None:
            found = {}
            for ref, tip in self.branches().items():
                policy = self.policy_at(tip)
                if isinstance(policy, Policy) and policy.is_protected(ref):
                    found[ref] = tip
            self._self_protected = found
        return self._self_protected

    def organization(self) -> tuple[bool, list[Policy]]:
        """The organization's policies, and whether they are the default branch's.

        The default branch's policy speaks for the organization only when it protects the
        default branch itself: otherwise anyone who may push that branch (a GitFlow
        ``develop``, a branch a maintainer made the default, one that does not exist)
        would write it. Then the policies of the self-protected branches do.
        """
        if self._org is None:
            ref, tip = self.default_branch()
            policy = self.policy_at(tip)
            if ref is not None and isinstance(policy, Policy) and policy.is_protected(ref):
                self._org = (True, [policy])
            else:
                found: list[Policy] = []
                for tip in self.self_protected().values():
                    policy = self.policy_at(tip)
                    if isinstance(policy, Policy) and policy not in found:
                        found.append(policy)
                self._org = (False, found)
        return self._org

    # -- one update ------------------------------------------------------------

    def check(self, update: RefUpdate, env: Mapping[str, str] | None,
              pusher_id: str | None = None, force_protected: bool = False) -> list[Violation]:
        """Violations of one ref update; empty when it may go in.

        ``env`` is the hook's environment (the pusher is read from it), or None
        for ``verify``, where ``pusher_id`` is given or the pusher is not checked.

        A branch is protected when the policy at its old tip says so, or one of the
        organization's policies does (``organization``). An existing branch is judged by
        the policy at its old tip and, so that it cannot carry rules of its own that grant
        more than the organization's, by the organization's policies too: the default
        branch's, or, when the default branch does not speak for the organization, those
        that protect this branch. A branch that does not exist yet is judged by the
        organization's policies that protect it, and only an org-admin may create it.
        """
        trusted_default, organization = self.organization()
        if not update.ref.startswith("refs/heads/") and not force_protected:
            return self._other_ref_check(update, organization)
        branch = short_ref(update.ref)
        if update.new is not None and (info := self.store.object_info(update.new)) and \
                info[1] != "commit":
            return [Violation(None, None, f"{branch} must point at a commit, not a {info[1]}",
                              "push a commit")]
        governing = self.policy_at(update.old) if update.old else None
        own = isinstance(governing, Policy) and governing.is_protected(update.ref)
        protecting = [p for p in organization if p.is_protected(update.ref)]
        if not (force_protected or own or protecting):
            return self._unprotected_check(update, env, branch)
        if update.old is not None and not isinstance(governing, Policy):
            why = (f"its policy is invalid ({governing})" if isinstance(governing, str)
                   else "there is no stageline.yaml to judge it by")
            return [Violation(None, POLICY_FILE, f"{branch} is protected but {why}",
                              "ask an org-admin to repair stageline.yaml on the default branch")]
        if update.new is None:
            return [Violation(None, None, f"the protected branch {branch} may not be deleted",
                              "keep the branch")]
        if isinstance(governing, Policy):
            extra = organization if trusted_default else ([] if own else protecting)
            policies = [governing, *(p for p in extra if p != governing)]
        else:
            policies = protecting
        if not policies:
            return [Violation(None, None, f"no policy of the organization protects {branch}, "
                                          "so nothing can judge its creation",
                              "an org-admin lists it in protected_branches first")]
        who: str | None = None
        if env is not None or pusher_id is not None:
            who = pusher_id if pusher_id is not None else pusher_from_env(policies[0], env or {})
            self.judged.append({"ref": update.ref, "old": update.old, "new": update.new,
                                "pusher": who})
            if not who:
                return [Violation(None, None, "the server did not say who is pushing",
                                  "push through the server's authenticated SSH or HTTP access")]
            for policy in policies:
                problem = pusher_problem(policy, who)
                if problem:
                    return [problem]
        if update.old is not None:
            if update.old == update.new:
                return []
            listed = self.store.rev_list([update.new, "--not", update.old])
            problem = _fast_forward_problem(listed, update.old, update.new, branch)
            if problem:
                return [problem]
            if self.progress:
                self.progress.phase("reading commits")
            commits = self.store.walk_listed(listed, trees=True)
        else:
            problem = self._creation_problem(update, policies, who, branch)
            if problem:
                return [problem]
            # A new protected branch brings every commit that no protected branch holds
            # yet, even those already on unchecked branches of the server.
            commits = self.store.walk([update.new, "--not", *self.protected_tips(policies)],
                                      trees=True)
        malformed = self.malformed(commits)
        violations: list[Violation] = []
        for policy in policies:
            # A service account's pushes are judged by their authors: pusher None.
            pusher = policy.member(who) if who else None
            violations += [v for v in self.judge(commits, policy, pusher, update.new, malformed,
                                                 update.ref)
                           if v not in violations]
        return violations

    def _creation_problem(self, update: RefUpdate, policies: Sequence[Policy], who: str | None,
                          branch: str) -> Violation | None:
        if update.ref in self.branches():
            # (git's own compare-and-swap refuses such an update anyway: it applies an update
            # only while the ref is still where the push says it was)
            return Violation(None, None, f"the push creates {branch}, which exists already",
                             "fetch and push again")
        twin = next((b for b in self.branches() if b.lower() == update.ref.lower()), None)
        if twin is not None:
            return Violation(None, None, f"{branch} differs only in case from the existing "
                                         f"branch {short_ref(twin)}",
                             f"push to {short_ref(twin)} itself")
        if who is not None and not all(
                (m := p.member(who)) is not None and m.has("org-admin") for p in policies):
            return Violation(None, None, f"only org-admins may create the protected branch "
                                         f"{branch}, and {who} is not one",
                             "ask an org-admin to push it first")
        return None

    def protected_tips(self, policies: Sequence[Policy]) -> list[str]:
        """The tips of the server's branches that a policy, or their own, protects."""
        own = self.self_protected()
        return [tip for ref, tip in self.branches().items()
                if ref in own or any(p.is_protected(ref) for p in policies)]

    def _other_ref_check(self, update: RefUpdate,
                         organization: Sequence[Policy]) -> list[Violation]:
        """Refs other than branches pass, unless they can change what a branch shows."""
        if update.ref.startswith("refs/replace/"):
            return [Violation(None, None, "replace refs are refused: they change what every "
                                          "git command on the server reads",
                              "push the commits themselves")]
        if update.new is None:
            return []  # removing a ref named like a branch is cleaning up
        if update.ref.startswith("refs/remotes/"):
            return [Violation(None, None, "refs/remotes/ is refused on the server: git reads "
                                          "refs/remotes/<name>/HEAD in place of a branch <name>",
                              "push a branch or a tag")]
        names = {b.lower() for p in organization for b in p.protected_branches}
        lowered = update.ref.lower()
        # What git's rev-parse tries for a name, before and after refs/heads/<name>
        # (refs/remotes/ is refused above), and any ref ending in /<name>.
        for name in sorted(names):
            if lowered in (f"refs/{name}", f"refs/tags/{name}") or \
                    lowered.rsplit("/", 1)[-1] == name:
                return [Violation(None, None, f"{update.ref} is named like the protected branch "
                                              f"{name}, which git would read in its place",
                                  "choose another name")]
        return []

    def _unprotected_check(self, update: RefUpdate, env: Mapping[str, str] | None,
                           branch: str) -> list[Violation]:
        """A branch no policy on the server protects may not make itself protected."""
        if update.new is None:
            return []
        proposed = self.policy_at(update.new)
        bootstrapping = env is not None and self.bootstrapping()
        if proposed is None or (isinstance(proposed, Policy)
                                and not proposed.is_protected(update.ref)):
            return []
        if isinstance(proposed, str) and not bootstrapping:
            return []  # a draft policy on a working branch protects nothing
        if bootstrapping:
            return self._bootstrap_check(update, proposed, env or {})
        return [Violation(update.new, POLICY_FILE,
                          f"the pushed stageline.yaml protects {branch}, which the server's "
                          "policy does not",
                          "an org-admin first adds it to protected_branches on the default "
                          "branch")]

    def _bootstrap_check(self, update: RefUpdate, proposed: Policy | str,
                         env: Mapping[str, str]) -> list[Violation]:
        """No branch holds a policy yet: a push bringing one is adopted, history and all,
        when the policy is valid and names the pusher org-admin."""
        if isinstance(proposed, str):
            return [Violation(update.new, POLICY_FILE, f"the first policy is invalid ({proposed})",
                              "push a valid stageline.yaml")]
        who = pusher_from_env(proposed, env)
        member = proposed.member(who) if who else None
        self.judged.append({"ref": update.ref, "old": update.old, "new": update.new,
                            "pusher": who})
        if member is None or not member.has("org-admin"):
            return [Violation(update.new, POLICY_FILE,
                              f"the first policy must name the pusher ({who or 'unknown'}) "
                              "org-admin", "the organization's first org-admin pushes it")]
        return []

    # -- judging commits ----------------------------------------------------------

    def judge(self, commits: Sequence[CommitInfo], policy: Policy, pusher: Member | None,
              tip: str, malformed: Mapping[str, tuple[tuple[str | None, str], ...]] | None = None,
              branch: str = "") -> list[Violation]:
        facts = self._facts(commits, tip, malformed or {}, branch)
        if self.progress:
            self.progress.phase("checking commits", len(facts))
        violations: list[Violation] = []
        for fact in facts:
            violations.extend(rules.judge_commit(fact, policy, pusher))
            if self.progress:
                self.progress.advance()
        return violations

    def malformed(self, commits: Sequence[CommitInfo]) -> dict[str, tuple[tuple[str | None, str],
                                                                          ...]]:
        """The objects each commit brings that git's own tools read in more than one way
        (``fsck.py``): the commit object itself, its root tree, every tree its first parent
        does not have (``diff-tree -t`` lists them), and any entry whose object is not of
        the kind its mode says (a "file" that is a directory). Each object is read once."""
        trees: dict[str, None] = {}
        # trees inside agent directories, whose names are free (environments/, an
        # environment's directory and approvals/ hold validated lowercase names only)
        judged: set[str] = set()
        files: dict[str, None] = {}
        for c in commits:
            trees[c.tree] = None
            for ch in c.changes:
                if ch.new_mode == TREE_MODE:
                    trees[ch.new_oid] = None
                    if ch.path.startswith(f"{ENV_ROOT}/") and ch.path.count("/") >= 2:
                        judged.add(ch.new_oid)
                elif ch.new_mode not in (DELETED_MODE, GITLINK_MODE):
                    files[ch.new_oid] = None
        oids = [c.oid for c in commits]
        problems: dict[str, str] = {}
        tree_data: dict[str, bytes] = {}
        for oid, obj in zip([*oids, *trees], self.store.objects([*oids, *trees]), strict=True):
            if obj is None:
                problems[oid] = "it cannot be read"
            elif oid in trees:
                if obj[1] == "tree":
                    tree_data[oid] = obj[2]
                else:
                    problems[oid] = f"its mode says a directory, but it is a {obj[1]}"
            elif why := (fsck.commit_problem(obj[2]) if obj[1] == "commit" else "not a commit"):
                problems[oid] = why
        problems.update(self._tree_problems(commits, tree_data, judged))
        for oid, info in zip(files, self.store.objects_info(list(files)), strict=True):
            if info is None or info[1] != "blob":
                problems[oid] = "its mode says a file, but it is " + \
                    (f"a {info[1]}" if info else "missing")
        if not problems:
            return {}
        result: dict[str, tuple[tuple[str | None, str], ...]] = {}
        for c in commits:
            found: list[tuple[str | None, str]] = []
            if c.oid in problems:
                found.append((None, f"the commit object is malformed: {problems[c.oid]}"))
            for oid, path in [(c.tree, None), *((ch.new_oid, ch.path) for ch in c.changes)]:
                if oid in problems:
                    where = f"the tree {path}" if path else "the root tree"
                    found.append((path, f"the commit's tree is malformed: {where}: "
                                        f"{problems[oid]}"))
            if found:
                result[c.oid] = tuple(found)
        return result

    def _tree_problems(self, commits: Sequence[CommitInfo], data: Mapping[str, bytes],
                       judged: set[str]) -> dict[str, str]:
        """Each new tree checked by fsck's rules, once. A large directory whose previous
        version was checked in this push (an environment's directory of thousands of
        agents, changed by commit after commit) is checked by building what it must be from
        that version and the entries the diff says changed, and comparing bytes
        (``fsck.TreeIndex``); only when they differ, or the first time, is it checked whole.
        Trees inside agent directories are also checked for names that are one file on
        another file system."""
        raw_len = self.store.hexlen // 2
        verdicts: dict[str, str | None] = {}
        latest: dict[str, tuple[str, fsck.TreeIndex]] = {}
        for c in reversed(commits):  # oldest first, as a rule: each version builds on one
            below: dict[str, list[tuple[bytes, bytes | None, bytes]]] = {}
            for ch in c.changes:
                parent, _, name = ch.path.rpartition("/")
                below.setdefault(parent, []).append(
                    (name.encode("utf-8", "surrogateescape"),
                     None if ch.new_mode == DELETED_MODE else ch.new_mode.lstrip("0").encode(),
                     bytes.fromhex(ch.new_oid)))
            for oid, path, old in [(c.tree, "", None), *((ch.new_oid, ch.path, ch.old_oid)
                                                         for ch in c.changes
                                                         if ch.new_mode == TREE_MODE)]:
                if oid in verdicts or oid not in data:
                    continue
                tree = data[oid]
                index = None
                base = latest.get(path)
                if base is not None and base[0] == old:
                    index = base[1].changed(below.get(path, []))
                    if index is not None and index.data() != tree:
                        index = None
                why = None if index is not None else fsck.tree_problem(tree, raw_len)
                if why is None and oid in judged:
                    names = [n.decode("utf-8", "surrogateescape")
                             for _m, n, _r in fsck.entries(tree, raw_len) or []]
                    pair = collision(names)
                    why = pair and (f"{pair[0]!r} and {pair[1]!r} are one file on "
                                    "case-insensitive or normalising file systems (Windows, "
                                    "macOS), so a checkout there keeps only one of them")
                verdicts[oid] = why
                if why is None and len(tree) >= INDEXED_TREE:
                    latest[path] = (oid, index or fsck.TreeIndex.of(tree, raw_len))
        return {oid: why for oid, why in verdicts.items() if why}

    def _facts(self, commits: Sequence[CommitInfo], tip: str,
               malformed: Mapping[str, tuple[tuple[str | None, str], ...]], branch: str
               ) -> list[rules.CommitFacts]:
        """What the rules need of each commit, read in one batch: the agent trees and
        approval records at the commit, the records at its first parent where it changes
        them, and the contents of the files it changes under environments/ and settings/
        (scanned for secrets, each blob once)."""
        store = self.store
        touched = [(c, rules.touched(c.changes)) for c in commits]
        specs: list[str] = []
        scanned: dict[str, None] = {}
        for c, agents in touched:
            specs += [f"{c.oid}:{env_dir(e, a)}" for e, a in _needed_trees(agents)]
            specs += [f"{c.oid}:{approval_path(a)}" for a in _judged_approvals(agents)]
            if c.parents:
                specs += [f"{c.parents[0]}:{approval_path(a)}" for a in agents.get("approval", ())]
            for ch in c.changes:
                if ch.new_mode in REGULAR_MODES and ch.path.startswith(SCANNED):
                    scanned[ch.new_oid] = None
        # Contents come along (one cat-file for all): approvals are read, agent trees small.
        found = dict(zip(specs, store.objects(specs), strict=True))
        secrets = {oid: label for oid, obj in zip(scanned, store.objects(list(scanned)),
                                                  strict=True)
                   if obj and (label := next((lb for lb, _line in secrets_in(obj[2])), None))}
        records: dict[str, Approval | str] = {}

        def record(spec: str) -> Approval | str | None:
            obj = found.get(spec)
            if obj is None:
                return None
            if obj[1] != "blob":
                return "approvals/ must hold files"
            if obj[0] not in records:
                records[obj[0]] = approval.parse(obj[2], spec.partition(":")[2])
            return records[obj[0]]

        chain: set[str] | None = None
        facts = []
        if self.progress:
            self.progress.phase("reading changes", len(touched))
        for c, agents in touched:
            if self.progress:
                self.progress.advance()
            trees = {(e, a): _tree(found.get(f"{c.oid}:{env_dir(e, a)}"))
                     for e, a in _needed_trees(agents)}
            approvals = {a: record(f"{c.oid}:{approval_path(a)}")
                         for a in _judged_approvals(agents)}
            previous = {a: record(f"{c.parents[0]}:{approval_path(a)}") if c.parents else None
                        for a in agents.get("approval", ())}
            policy_blob = next((store.read_blob(ch.new_oid) for ch in c.changes
                                if ch.path == POLICY_FILE and ch.new_mode in REGULAR_MODES),
                               None)
            restored: dict[str, str | None] | None = None
            restore_problem = None
            target = c.trailers.get(rules.RESTORES_TRAILER)
            if target is not None:
                if chain is None:
                    chain = set(store.first_parent_chain(tip))
                restore_problem = self._restore_problem(c, target, chain)
                if restore_problem is None:
                    restored = {a: store.tree_at(target, env_dir("production", a))
                                for a in agents.get("production", ())}
            found_secrets = tuple((ch.path, secrets[ch.new_oid]) for ch in c.changes
                                  if ch.new_oid in secrets)
            facts.append(rules.CommitFacts(
                c.oid, len(c.parents), c.author_email, c.trailers, c.changes, agents, trees,
                approvals, policy_blob=policy_blob, restored=restored,
                restore_problem=restore_problem, malformed=malformed.get(c.oid, ()),
                empty_tree=store.empty_tree, previous_approvals=previous,
                secrets=found_secrets, branch=branch))
        return facts

    def _restore_problem(self, commit: CommitInfo, target: str, chain: set[str]) -> str | None:
        if "\n" in target:
            return f"a rollback names one {rules.RESTORES_TRAILER} commit"
        if not looks_like_oid(target) or len(target) != self.store.hexlen:
            return f"{rules.RESTORES_TRAILER} must be a full commit id"
        if target not in chain or not commit.parents or \
                not self.store.is_ancestor(target, commit.parents[0]):
            return (f"{rules.RESTORES_TRAILER} {target[:12]} is not an earlier state of the "
                    "branch")
        return None


def _fast_forward_problem(listed: Sequence[tuple[str, tuple[str, ...]]], old: str,
                          new: str | None, branch: str) -> Violation | None:
    """None when ``old`` is on ``new``'s first-parent chain; ``listed`` is
    ``rev-list --parents new --not old``, the commits the update brings."""
    parents = dict(listed)
    commit = new
    while commit in parents and parents[commit]:
        if parents[commit][0] == old:
            return None
        commit = parents[commit][0]
    return Violation(None, None, f"the update of {branch} is not a fast-forward along its "
                                 "first parents (a force push or a rewritten history)",
                     f"rebase onto the server's {branch} ('git pull --rebase') and push again")


def _judged_approvals(agents: dict[str, set[str]]) -> set[str]:
    """The agents whose approval the rules read: those whose staging, production or
    approval the commit touches (an edit of development alone needs none)."""
    return set().union(*(agents.get(k, set()) for k in ("staging", "production", "approval")))


def _needed_trees(agents: dict[str, set[str]]) -> list[tuple[str, str]]:
    needed = set()
    for agent in agents.get("staging", ()):
        needed |= {("development", agent), ("staging", agent)}
    for agent in agents.get("production", ()):
        needed |= {("staging", agent), ("production", agent)}
    for agent in agents.get("approval", ()):
        needed.add(("staging", agent))
    return sorted(needed)


def _tree(found: tuple[str, str, bytes] | None) -> str | None:
    return found[0] if found and found[1] == "tree" else None


# -- entry points ----------------------------------------------------------------


def _prefix(env: Mapping[str, str]) -> str:
    return "GL-HOOK-ERR: " if env.get("GL_ID") or env.get("GL_USERNAME") else ""


def report(ref: str, violations: Sequence[Violation], env: Mapping[str, str]) -> list[str]:
    prefix = _prefix(env)
    lines = [f"{prefix}stageline: push to {short_ref(ref)} rejected: {v.line()}"
             for v in violations[:MAX_LINES_SHOWN]]
    if len(violations) > MAX_LINES_SHOWN:
        lines.append(f"{prefix}stageline: ... and {len(violations) - MAX_LINES_SHOWN} more "
                     "violations.")
    return lines


def run_chained(chain: str | None, stdin: bytes) -> int:
    """Run a hook that was installed before ours, with the same input; its status counts.
    As git runs hooks: a script without a ``#!`` line (the kernel refuses it, ENOEXEC) is
    run by ``sh``."""
    if not chain or not os.path.isfile(chain) or not os.access(chain, os.X_OK):
        return 0
    try:
        return subprocess.run([chain], input=stdin).returncode
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        return subprocess.run(["sh", chain], input=stdin).returncode


def pre_receive(stdin: bytes, env: Mapping[str, str], chain: str | None = None,
                record: bool = False) -> int:
    """The pre-receive hook: 0 accepts the push, 1 rejects it. Any error rejects it.

    With ``record`` (the installed shim passes it, beside stageline's post-receive), the
    updates it judged as protected are kept for post-receive to log (``JUDGED_DIR``)."""
    try:
        status = run_chained(chain, stdin)
        if status != 0:
            return status
        updates = parse_updates(stdin.decode("utf-8", "surrogateescape"))
        rejected = False
        with Store.open(".") as store:
            enforcer = Enforcer(store)
            for update in updates:
                violations = enforcer.check(update, env)
                if violations:
                    rejected = True
                    for line in report(update.ref, violations, env):
                        print(line, file=sys.stderr)
            if record and not rejected:
                _keep_judged(store, _push_key(stdin, env), enforcer.judged)
        return 1 if rejected else 0
    except Exception as exc:  # noqa: BLE001 - fail closed, one sentence, no traceback
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        print(f"{_prefix(env)}stageline: push rejected because the check itself failed "
              f"({message}); nothing was changed. Tell the server's administrator.",
              file=sys.stderr)
        return 1


def post_receive(stdin: bytes, env: Mapping[str, str], chain: str | None = None) -> int:
    """Record each accepted update of a protected branch in the server's push log: those
    pre-receive judged as protected (its record of this push), or, when it left none (a
    pre-receive without ``--record``), every update of a branch."""
    try:
        try:
            run_chained(chain, stdin)
        except OSError as exc:  # its failure is its own; the push is still logged
            print(f"stageline: the chained hook {chain} could not run ({exc.strerror}).",
                  file=sys.stderr)
        updates = parse_updates(stdin.decode("utf-8", "surrogateescape"))
        with Store.open(".") as store:
            judged = _take_judged(store, _push_key(stdin, env))
            if judged is None:
                enforcer = Enforcer(store)
                judged = []
                for update in updates:
                    if update.ref.startswith("refs/heads/"):
                        policy = enforcer.policy_at(update.old or update.new)
                        found = first_set(policy.identity_env if isinstance(policy, Policy)
                                          else DEFAULT_IDENTITY_ENV, env)
                        judged.append({"ref": update.ref, "old": update.old, "new": update.new,
                                       "pusher": found[1] if found else None})
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if judged:
                data = "".join(json.dumps({"time": now, **r}, sort_keys=True) + "\n"
                               for r in judged)
                fd = os.open(store.git_dir / PUSH_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                             0o644)
                try:
                    os.write(fd, data.encode())
                finally:
                    os.close(fd)
        return 0
    except Exception as exc:  # noqa: BLE001 - the push is done; say what was not recorded
        print(f"stageline: the push was accepted but not recorded in {PUSH_LOG} "
              f"({type(exc).__name__}: {exc}).", file=sys.stderr)
        return 0


JUDGED_DIR = "stageline-judged"  # in the server repository: pre-receive's records for post-receive
_STALE_RECORD = 86400  # seconds: a record whose push never completed


def _push_key(stdin: bytes, env: Mapping[str, str]) -> str:
    """One push's name, the same in its pre-receive and post-receive: its updates and the
    server's word for who pushes (so that two people pushing the same update apart)."""
    import hashlib

    who = "\0".join(env.get(name, "") for name in ("GL_ID", *DEFAULT_IDENTITY_ENV))
    return hashlib.sha256(stdin + b"\0" + who.encode("utf-8", "surrogateescape")).hexdigest()


def _keep_judged(store: Store, key: str, judged: list[dict[str, str | None]]) -> None:
    """Write pre-receive's record of this push (an error rejects the push: an accepted
    update of a protected branch that the log would miss is a hole in the audit)."""
    folder = store.git_dir / JUDGED_DIR
    folder.mkdir(exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > _STALE_RECORD:
                old.unlink()
    tmp = folder / f"{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(judged), encoding="utf-8")
    os.replace(tmp, folder / f"{key}.json")


def _take_judged(store: Store, key: str) -> list[dict[str, str | None]] | None:
    path = store.git_dir / JUDGED_DIR / f"{key}.json"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    if not isinstance(records, list):
        return None
    return records


def verify(store: Store, old: str, new: str, ref: str | None, pusher: str | None,
           progress: Progress | None = None) -> tuple[str, list[Violation]]:
    """The server's rules over ``old..new``, judged as an update of ``ref`` (``verify``)."""
    old_oid = store.resolve(old)
    new_oid = store.resolve(new)
    if old_oid is None or new_oid is None:
        missing = old if old_oid is None else new
        raise UsageError(f"{missing!r} names no commit in this repository.")
    enforcer = Enforcer(store, progress)
    policy = enforcer.policy_at(old_oid)
    if ref is None:
        if not isinstance(policy, Policy):
            raise PolicyError(f"there is no valid {POLICY_FILE} at {old}; cannot verify.")
        ref = f"refs/heads/{policy.protected_branches[0]}"
    elif not ref.startswith("refs/"):
        ref = f"refs/heads/{ref}"
    default, tip = _default_of_clone(store, policy)
    # the range is judged as a push whose old tip is OLD: when it updates the default
    # branch, OLD is that branch's tip, whatever the clone last fetched
    enforcer.use_default(default, old_oid if default == ref else tip)
    return ref, enforcer.check(RefUpdate(old_oid, new_oid, ref), None, pusher,
                               force_protected=True)


def _default_of_clone(store: Store, policy: Policy | str | None) -> tuple[str | None, str | None]:
    """The server's default branch as a CI clone knows it, so that verify judges by the
    organization's policy as the hook does: ``origin/HEAD``, else the first branch the
    policy at OLD protects that the clone has (``origin/<name>``, else ``<name>``).
    Returned as the server names it (``refs/heads/<name>``), with its tip."""
    remote = store.run("symbolic-ref", "-q", "refs/remotes/origin/HEAD", check=False)
    names = [remote.decode("utf-8", "surrogateescape").strip()] if remote.strip() else []
    if isinstance(policy, Policy):
        names += [f"refs/remotes/origin/{b}" for b in policy.protected_branches]
        names += [f"refs/heads/{b}" for b in policy.protected_branches]
    for name in names:
        tip = store.resolve(name)
        if tip is not None:
            short = name.removeprefix("refs/remotes/origin/").removeprefix("refs/heads/")
            return f"refs/heads/{short}", tip
    return None, None


def main(kind: str, args: Sequence[str]) -> int:
    """``stageline hook pre-receive|post-receive [--chain PATH]``, as the shim runs it.

    Kept free of click so that the hook starts quickly.
    """
    chain = None
    rest = list(args)
    if rest[:1] == ["--chain"] and len(rest) >= 2:
        chain, rest = rest[1], rest[2:]
    record = "--record" in rest and kind == "pre-receive"
    if record:
        rest.remove("--record")
    if rest:
        print(f"stageline: unexpected arguments {' '.join(rest)!r} for hook {kind}.",
              file=sys.stderr)
        return 2
    stdin = sys.stdin.buffer.read()
    if kind == "pre-receive":
        return pre_receive(stdin, dict(os.environ), chain, record)
    return post_receive(stdin, dict(os.environ), chain)
