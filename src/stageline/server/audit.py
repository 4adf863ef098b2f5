"""``stageline audit``: every commit from a trusted root to a branch's tip, judged by the
policy at its first parent, as a verifier who trusts only the root would judge them.

The policy at the root is trusted; a commit that changes the policy is judged by the
one before it (only an org-admin, signed when signing is required, may change it), so
the policy each later commit is judged by was itself judged: members and keys added or
removed along the way count from the commit after the one that changed them. Every
rule of the hook applies but two that only a server can know: who pushed (there is no
pusher in a history) and release windows (judged by the server's clock at push time).
A key revoked anywhere along the way, or at the tip, is revoked for the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from stageline.errors import UsageError
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.layout import DELETED_MODE, POLICY_FILE
from stageline.rules import Violation
from stageline.server import facts, signatures
from stageline.server.judge import verdict
from stageline.server.policies import Policies, PolicyAt


def audit(store: Store, root: str, tip: str, branch: str) -> tuple[int, list[Violation]]:
    """How many commits were judged, and every violation among them."""
    if not store.is_ancestor(root, tip):
        raise UsageError(f"{root[:12]} is not an earlier commit of {branch}; --from takes a "
                         "commit the branch's history holds.")
    listed = store.rev_list(["--topo-order", tip, "--not", root])
    commits = store.walk_listed(listed, trees=True)
    at_parent = _policies_at_parents(store, commits)
    bodies: dict[str, bytes] = {}
    malformed = facts.malformed(store, commits, bodies)
    found = facts.gather(store, commits, tip, malformed, f"refs/heads/{branch}")
    policies = [p.policy for p in at_parent.values() if p.policy is not None]
    signed = signatures.check(store, signatures.needing(commits, policies), bodies)
    # A key revoked anywhere in the history, or at the tip, is revoked for all of it: its
    # holder's signatures prove nothing, whenever they claim to be made.
    tip_policy = Policies(store).at(tip).policy
    revoked = frozenset().union(*(p.signing.revoked for p in
                                  [*policies, *([tip_policy] if tip_policy else [])]))
    strict = {id(p): replace(p, signing=replace(p.signing, revoked=p.signing.revoked | revoked))
              for p in policies}
    violations: list[Violation] = []
    for commit, fact in zip(commits, found, strict=True):
        read = at_parent[commit.oid]
        if read.policy is None:
            why = f"it is invalid ({read.problem})" if read.problem else "there is none"
            violations.append(Violation(commit.oid, POLICY_FILE, "nothing can judge this "
                                        f"commit: the policy at its first parent is missing "
                                        f"or invalid ({why})", "audit from a later root"))
            continue
        violations += verdict(commit, fact, strict[id(read.policy)], None, signed)
    return len(commits), violations


def _policies_at_parents(store: Store, commits: Sequence[CommitInfo]) -> dict[str, PolicyAt]:
    """The policy at each commit's first parent, each file parsed once: from the walk's
    own changes of ``stageline.yaml``, oldest first, and for the commits whose first
    parent is not in the walk (the root, a merged branch's base) one batch of lookups."""
    policies = Policies(store)
    listed = {c.oid for c in commits}
    blob_at: dict[str, str | None] = {}
    outside = sorted({c.parents[0] for c in commits if c.parents and c.parents[0] not in listed})
    infos = store.objects_info([f"{p}:{POLICY_FILE}" for p in outside])
    for parent, info in zip(outside, infos, strict=True):
        blob_at[parent] = info[0] if info and info[1] == "blob" else None
    parsed: dict[str | None, PolicyAt] = {None: PolicyAt()}
    result: dict[str, PolicyAt] = {}
    for commit in reversed(commits):  # --topo-order reversed: parents first
        base = blob_at.get(commit.parents[0]) if commit.parents else None
        if base not in parsed:
            parsed[base] = policies.blob(base) if base else PolicyAt()
        result[commit.oid] = parsed[base]
        own = next((ch for ch in commit.changes if ch.path == POLICY_FILE), None)
        blob_at[commit.oid] = base if own is None else \
            (None if own.new_mode == DELETED_MODE else own.new_oid)
    return result
