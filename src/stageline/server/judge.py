"""Judging one ref update: the shape of the update, who pushes, which commits it brings,
and each commit by ``rules.judge_commit`` on the facts ``facts`` gathers in batches.

Reads only: nothing here writes objects or refs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stageline import rules, signing, trailers
from stageline.errors import UsageError
from stageline.git.objects import is_null_oid, short_ref
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.layout import ENV_ROOT, POLICY_FILE
from stageline.policy import Member, Policy, first_set
from stageline.rules import Violation
from stageline.server import facts, signatures
from stageline.server.policies import Policies, PolicyAt

if TYPE_CHECKING:
    from stageline.progress import Progress

# A ref name holds no ASCII control character or space, but may hold any other character,
# Unicode spaces and line breaks (NBSP, NEL, U+2028) included.
_LINE_RE = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) ([^\x00-\x20\x7f]+)")
# Where an override matters: the environments only promotions write.
_GUARDED = (f"{ENV_ROOT}/staging/", f"{ENV_ROOT}/production/")


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
    """Judges ref updates of one repository by the server's policies."""

    def __init__(self, store: Store, progress: Progress | None = None) -> None:
        self.store = store
        self.progress = progress  # verify shows it on a terminal; the hook has none
        self.policies = Policies(store)
        # The updates judged as protected branches (bootstrap included), as the push log
        # records them: what post-receive logs is exactly this.
        self.judged: list[dict[str, object]] = []
        self.policy_changed: list[str] = []  # protected refs whose push changes the policy
        # Windows are judged by this machine's clock when judging starts (the server's,
        # in the hook): never a commit's date, which the pusher writes.
        self.now = datetime.now(UTC)

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
        trusted_default, organization = self.policies.organization()
        if not update.ref.startswith("refs/heads/") and not force_protected:
            return self._other_ref_check(update, organization)
        branch = short_ref(update.ref)
        if update.new is not None and (info := self.store.object_info(update.new)) and \
                info[1] != "commit":
            return [Violation(None, None, f"{branch} must point at a commit, not a {info[1]}",
                              "push a commit")]
        read = self.policies.at(update.old)
        governing = read.policy
        own = governing is not None and governing.is_protected(update.ref)
        protecting = [p for p in organization if p.is_protected(update.ref)]
        if not (force_protected or own or protecting):
            return self._unprotected_check(update, env, branch)
        if update.old is not None and governing is None:
            why = (f"its policy is invalid ({read.problem})" if read.problem
                   else "there is no stageline.yaml to judge it by")
            return [Violation(None, POLICY_FILE, f"{branch} is protected but {why}",
                              "ask an org-admin to repair stageline.yaml on the default branch")]
        if update.new is None:
            return [Violation(None, None, f"the protected branch {branch} may not be deleted",
                              "keep the branch")]
        if governing is not None:
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
            tips = self.policies.protected_tips(policies)
            commits = self.store.walk([update.new, "--not", *tips], trees=True)
        if any(ch.path == POLICY_FILE for c in commits for ch in c.changes):
            self.policy_changed.append(update.ref)
        overrides = [{"commit": c.oid, "reason": c.trailers[trailers.OVERRIDE].strip()}
                     for c in commits if c.trailers.get(trailers.OVERRIDE, "").strip()
                     and any(ch.path.startswith(_GUARDED) for ch in c.changes)]
        if overrides and self.judged and self.judged[-1]["ref"] == update.ref:
            self.judged[-1]["overrides"] = overrides  # the push log shows them
        bodies: dict[str, bytes] = {}
        malformed = facts.malformed(self.store, commits, bodies)
        signed = signatures.check(self.store, signatures.needing(commits, policies), bodies)
        found = self.facts(commits, update.new, malformed, update.ref)  # once, for every policy
        violations: list[Violation] = []
        for policy in policies:
            # A service account's pushes are judged by their authors: pusher None.
            pusher = policy.member(who) if who else None
            violations += [v for v in self.verdicts(commits, found, policy, pusher, signed)
                           if v not in violations]
        return violations

    def _creation_problem(self, update: RefUpdate, policies: Sequence[Policy], who: str | None,
                          branch: str) -> Violation | None:
        if update.ref in self.policies.branches():
            # (git's own compare-and-swap refuses such an update anyway: it applies an update
            # only while the ref is still where the push says it was)
            return Violation(None, None, f"the push creates {branch}, which exists already",
                             "fetch and push again")
        twin = next((b for b in self.policies.branches() if b.lower() == update.ref.lower()), None)
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
        proposed = self.policies.at(update.new)
        bootstrapping = env is not None and self.policies.bootstrapping()
        if proposed.policy is None and proposed.problem is None:
            return []
        if proposed.policy is not None and not proposed.policy.is_protected(update.ref):
            return []
        if proposed.problem is not None and not bootstrapping:
            return []  # a draft policy on a working branch protects nothing
        if bootstrapping:
            return self._bootstrap_check(update, proposed, env or {})
        return [Violation(update.new, POLICY_FILE,
                          f"the pushed stageline.yaml protects {branch}, which the server's "
                          "policy does not",
                          "an org-admin first adds it to protected_branches on the default "
                          "branch")]

    def _bootstrap_check(self, update: RefUpdate, proposed: PolicyAt,
                         env: Mapping[str, str]) -> list[Violation]:
        """No branch holds a policy yet: a push bringing one is adopted, history and all,
        when the policy is valid and names the pusher org-admin."""
        if proposed.policy is None:
            return [Violation(update.new, POLICY_FILE,
                              f"the first policy is invalid ({proposed.problem})",
                              "push a valid stageline.yaml")]
        who = pusher_from_env(proposed.policy, env)
        member = proposed.policy.member(who) if who else None
        self.judged.append({"ref": update.ref, "old": update.old, "new": update.new,
                            "pusher": who})
        if member is None or not member.has("org-admin"):
            return [Violation(update.new, POLICY_FILE,
                              f"the first policy must name the pusher ({who or 'unknown'}) "
                              "org-admin", "the organization's first org-admin pushes it")]
        return []

    def _names_taken(self) -> frozenset[str]:
        """The names that refs other than branches stand for, as git resolves a name
        (``refs/<name>``, ``refs/tags/<name>``, any ref ending in ``/<name>``): a policy
        may not protect a name one of them already takes (fifth pass: a tag pushed
        before its name was protected shadowed the branch created after)."""
        taken: set[str] = set()
        for ref in self.store.refs("refs/"):
            if ref.startswith("refs/heads/"):
                continue
            lowered = ref.lower()
            taken |= {lowered.removeprefix("refs/"), lowered.rsplit("/", 1)[-1]}
            if lowered.startswith("refs/tags/"):
                taken.add(lowered.removeprefix("refs/tags/"))
        return frozenset(taken)

    def judge(self, commits: Sequence[CommitInfo], policy: Policy, pusher: Member | None,
              tip: str, malformed: Mapping[str, tuple[tuple[str | None, str], ...]] | None = None,
              branch: str = "", signed: Mapping[str, signing.Checked] | None = None
              ) -> list[Violation]:
        """Every rule over ``commits`` by ``policy``; with ``signed`` (the commits exist:
        not ``guard``'s staged one), signatures too, each commit's as the policy requires."""
        return self.verdicts(commits, self.facts(commits, tip, malformed, branch), policy,
                             pusher, signed)

    def facts(self, commits: Sequence[CommitInfo], tip: str,
              malformed: Mapping[str, tuple[tuple[str | None, str], ...]] | None,
              branch: str) -> list[rules.CommitFacts]:
        """What the rules need of ``commits``, whatever the policy (``facts.gather``)."""
        existing = frozenset(short_ref(b).lower() for b in self.policies.branches())
        if any(ch.path == POLICY_FILE for c in commits for ch in c.changes):
            existing |= self._names_taken()
        return facts.gather(self.store, commits, tip, malformed or {}, branch, existing,
                            self.now, self.progress)

    def verdicts(self, commits: Sequence[CommitInfo], found: Sequence[rules.CommitFacts],
                 policy: Policy, pusher: Member | None,
                 signed: Mapping[str, signing.Checked] | None) -> list[Violation]:
        """Every rule over ``commits``, whose facts are ``found``, by ``policy``."""
        if self.progress:
            self.progress.phase("checking commits", len(found))
        violations: list[Violation] = []
        for commit, fact in zip(commits, found, strict=True):
            violations.extend(verdict(commit, fact, policy, pusher, signed))
            if self.progress:
                self.progress.advance()
        return violations


def verdict(commit: CommitInfo, fact: rules.CommitFacts, policy: Policy, pusher: Member | None,
            signed: Mapping[str, signing.Checked] | None) -> list[Violation]:
    """Every rule over one commit by ``policy``, its signature too when ``signed`` holds
    the commits' signatures (None: the commit is not made yet, as ``guard``'s)."""
    found = rules.judge_commit(fact, policy, pusher)
    if signed is not None and not fact.malformed and \
            signing.required(commit.changes, policy.signing.require):
        found += signing.judge(commit.oid, commit.author_email, commit.committer_email,
                               signed.get(commit.oid), policy)
    return found


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


