"""Which policy governs a branch of the server, read as the push found the server.

A branch's own policy is ``stageline.yaml`` at its old tip, never the pushed one. The
organization's policy is the default branch's, but only when that policy protects the
default branch itself: otherwise anyone who may push that branch (a GitFlow ``develop``,
a branch a maintainer made the default, one that does not exist) would write it, and the
policies of the branches that protect themselves speak for the organization instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from stageline.git.store import Store
from stageline.layout import POLICY_FILE
from stageline.policy import Policy, PolicyError, parse_policy


@dataclass(frozen=True)
class PolicyAt:
    """``stageline.yaml`` at a commit: a valid policy, why it is not one, or neither when
    there is no such file."""

    policy: Policy | None = None
    problem: str | None = None


class Policies:
    """The server's branches and their policies before the push, each read once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._default: tuple[str | None, str | None] | None = None
        self._branches: dict[str, str] | None = None
        self._bootstrap: bool | None = None
        self._read: dict[str, PolicyAt] = {}
        self._self_protected: dict[str, str] | None = None
        self._organization: tuple[bool, list[Policy]] | None = None

    def default_branch(self) -> tuple[str | None, str | None]:
        """The server's default branch (what its ``HEAD`` names) and its tip."""
        if self._default is None:
            ref = self.store.head_ref()
            # Through the long-lived cat-file the checks use anyway: no rev-parse to start.
            found = self.store.objects([f"{ref}^{{commit}}"])[0] if ref else None
            self._default = (ref, found[0] if found and found[1] == "commit" else None)
        return self._default

    def use_default(self, ref: str | None, tip: str | None) -> None:
        """Take ``ref`` at ``tip`` as the server's default branch (``verify``, in a clone)."""
        self._default = (ref, tip)

    def branches(self) -> dict[str, str]:
        """The server's branches and their tips before the push."""
        if self._branches is None:
            self._branches = self.store.branches()
        return self._branches

    def bootstrapping(self) -> bool:
        """True while no branch of the server holds a stageline.yaml."""
        if self._bootstrap is None:
            tips = list(self.branches().values())
            infos = self.store.objects_info([f"{tip}:{POLICY_FILE}" for tip in tips])
            self._bootstrap = not any(info and info[1] == "blob" for info in infos)
        return self._bootstrap

    def at(self, commit: str | None) -> PolicyAt:
        """The policy at ``commit`` (parsed once per commit and once per file)."""
        if commit is None:
            return PolicyAt()
        if commit not in self._read:
            found = self.store.objects([f"{commit}:{POLICY_FILE}"])[0]
            if found is None or found[1] != "blob":
                self._read[commit] = PolicyAt()
            else:
                # many branches hold the same policy file
                self._read[commit] = self._parsed(found[0], found[2])
        return self._read[commit]

    def blob(self, oid: str) -> PolicyAt:
        """The policy in the blob ``oid`` (parsed once)."""
        if oid not in self._read:
            found = self.store.objects([oid])[0]
            if found is None or found[1] != "blob":
                return PolicyAt(problem="stageline.yaml is not a file")
            return self._parsed(oid, found[2])
        return self._read[oid]

    def _parsed(self, oid: str, data: bytes) -> PolicyAt:
        if oid not in self._read:
            try:
                self._read[oid] = PolicyAt(parse_policy(data))
            except PolicyError as exc:
                self._read[oid] = PolicyAt(problem=exc.message.rstrip("."))
        return self._read[oid]

    def self_protected(self) -> dict[str, str]:
        """The branches whose own tip's policy protects them, with their tips. Only such a
        branch's history was judged by the rules (a policy cannot make the unprotected
        branch it is pushed to protected, outside bootstrap)."""
        if self._self_protected is None:
            self._self_protected = {}
            for ref, tip in self.branches().items():
                policy = self.at(tip).policy
                if policy is not None and policy.is_protected(ref):
                    self._self_protected[ref] = tip
        return self._self_protected

    def organization(self) -> tuple[bool, list[Policy]]:
        """The organization's policies, and whether they are the default branch's."""
        if self._organization is None:
            ref, tip = self.default_branch()
            policy = self.at(tip).policy
            if ref is not None and policy is not None and policy.is_protected(ref):
                self._organization = (True, [policy])
            else:
                found: list[Policy] = []
                for tip in self.self_protected().values():
                    policy = self.at(tip).policy
                    if policy is not None and policy not in found:
                        found.append(policy)
                self._organization = (False, found)
        return self._organization

    def protected_tips(self, policies: list[Policy]) -> list[str]:
        """The tips of the server's branches that these policies, or their own, protect."""
        own = self.self_protected()
        return [tip for ref, tip in self.branches().items()
                if ref in own or any(p.is_protected(ref) for p in policies)]
