"""``stageline audit``: every commit from a trusted root to a branch's tip, judged as a
verifier who trusts only the root would judge them.

The policy at the root is trusted; a commit that changes the policy is judged by the
one before it (only an org-admin, signed when signing is required, may change it), so
the policy each later commit is judged by was itself judged. Each commit is judged by
the policy at its first parent, and also:

* a merge, by the policy at each of its other parents (as Guix authenticates
  merges): a branch that kept an old policy, where a removed member was still an
  admin, cannot make its merge with the branch that removed them his own;
* a commit a merge of the branch's first-parent line brings, by the policy of the line
  at that merge, as the hook judges every commit a push brings by the branch's policy:
  a side branch started before a key was retired cannot bring that key's commits in.

The root must be on the tip's first-parent chain (a protected branch moves along its
first parents): audit from the last tip you audited, and a history rewritten since, or
a "foxtrot" merge that made another line the first parent, is a violation. From the
history alone, a line kept apart from the root's and merged in first cannot be told from
one that was always the branch: only the tips you saw can.

Every rule of the hook applies but two that only a server can know: who pushed (there
is no pusher in a history) and release windows (judged by the server's clock at push
time). A key revoked anywhere along the way, or at the tip, is revoked for the whole
history.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from stageline.errors import RepositoryError, UsageError
from stageline.git.objects import looks_like_oid
from stageline.git.process import in_parallel, nogc
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.layout import DELETED_MODE, POLICY_FILE
from stageline.policy import Policy
from stageline.rules import CommitFacts, Violation
from stageline.server import facts, signatures
from stageline.server.judge import verdict
from stageline.server.policies import Policies, PolicyAt
from stageline.signing import Checked

SPLIT = 2000  # commits from which two processes judge them, a half each
# in the git directory: {"<root> <branch>": {tip, commits, revoked}}
AUDITED = "stageline-audited.json"


def named(store: Store, root: str, ref: str | None) -> tuple[str, str, str]:
    """ROOT's commit, the branch's full ref and its tip, read so that no other ref can
    stand in for them: ``--ref NAME`` is ``refs/heads/NAME`` (git's own lookup would take a
    tag or a remote-tracking ref of that name first, and anyone may push a tag), ROOT a
    full commit id or a full ref name."""
    full = ref if ref and ref.startswith("refs/") else f"refs/heads/{ref}" if ref else \
        store.head_ref()
    if full is None:
        raise UsageError("HEAD is not on a branch; name the branch with --ref.")
    tip = store.refs(full).get(full)
    tip = store.resolve(tip) if tip else None
    if tip is None:
        raise UsageError(f"there is no {full}; --ref takes a branch (main) or a full ref "
                         "name (refs/remotes/origin/main).")
    if root.startswith("refs/"):
        found = store.refs(root).get(root)
        start = store.resolve(found) if found else None
    elif looks_like_oid(root) and len(root) == store.hexlen:
        start = store.resolve(root)
    else:
        raise UsageError(f"--from takes a full commit id or a full ref name (refs/tags/v1), "
                         f"not {root!r}: a short name could be a tag anyone may push.")
    if start is None:
        raise UsageError(f"{root!r} names no commit in this repository.")
    return start, full, tip


def audit(store: Store, root: str, tip: str, branch: str,
          full: bool = False) -> tuple[int, list[Violation]]:
    """How many commits were judged, and every violation among them.

    Each audit is recorded in the git directory (``AUDITED``, by root and branch): the
    tip it reached, the keys it saw revoked, and whether it was clean. The next audit
    from the same root requires the branch to still pass through that tip on its
    first-parent line (a history rewritten, or merged "foxtrot", since is a violation)
    and keeps those keys revoked, whatever the history now says; after a clean one it
    judges only the commits since (unless ``full``), and all of them again when a key
    was revoked since, since its earlier signatures count no more."""
    path = Path(store.git_dir) / AUDITED
    key = f"{root} {branch}"
    record = _recorded(path).get(key)
    seen = frozenset(record["revoked"]) if record else frozenset()
    if record is not None and record["tip"] != tip and not _on_line(store, record["tip"], tip):
        return 0, [_skipped(tip, branch, record["tip"], "the tip audited before")]
    if record is None or full or not record["clean"]:
        count, violations, revoked = judged(store, root, tip, branch, seen)
    elif record["tip"] == tip:
        return record["commits"], []
    else:
        count, violations, revoked = judged(store, record["tip"], tip, branch, seen,
                                            "the tip audited before")
        if not revoked <= seen:
            count, violations, revoked = judged(store, root, tip, branch, seen)
        else:
            count += record["commits"]
    _record(path, key, {"tip": tip, "commits": count, "revoked": sorted(revoked),
                        "clean": not violations})
    return count, violations


def _on_line(store: Store, commit: str, tip: str) -> bool:
    """Whether ``commit`` is on ``tip``'s first-parent line."""
    return commit in set(store.first_parent_chain(tip))


def _skipped(tip: str, branch: str, root: str, what: str) -> Violation:
    """The branch does not move through ``root``: rewritten, or a merge put another line
    first ("foxtrot"), as no push the hook accepts could."""
    return Violation(tip, None, f"the first-parent line of {branch} does not pass through "
                                f"{root[:12]} ({what}): its history was rewritten, or a merge "
                                "made another line its first parent",
                     "restore the branch to a state that holds it on its first-parent line, "
                     "and merge with that line first")


def _recorded(path: Path) -> dict[str, dict[str, Any]]:
    """The clean audits recorded, by root and branch; anything unreadable is no record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: r for key, r in data.items() if isinstance(r, dict)
            and isinstance(r.get("tip"), str) and isinstance(r.get("commits"), int)
            and isinstance(r.get("clean"), bool) and isinstance(r.get("revoked"), list)
            and all(isinstance(f, str) for f in r["revoked"])}


def _record(path: Path, key: str, record: dict[str, Any]) -> None:
    found = _recorded(path)
    found[key] = record
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(found, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only repository: audited, not recorded


@nogc
def judged(store: Store, root: str, tip: str, branch: str,
           revoked_before: frozenset[str] = frozenset(), root_is: str = "--from"
           ) -> tuple[int, list[Violation], frozenset[str]]:
    """The commits from ``root`` to ``tip`` judged: how many, the violations, and every
    key revoked by a policy among them, at the tip or in ``revoked_before``."""
    listed = store.rev_list(["--topo-order", tip, "--not", root])
    parents_of = dict(listed)
    mainline: list[str] = []  # the first-parent line from the tip, as far as the listing
    step: str | None = tip
    while step in parents_of:
        mainline.append(step)
        step = next(iter(parents_of[step]), None)
    if root != tip and (not mainline or parents_of[mainline[-1]][:1] != (root,)):
        if not store.is_ancestor(root, tip):
            raise UsageError(f"{root[:12]} is not an earlier commit of {branch}; --from takes "
                             "a commit the branch's history holds.")
        return 0, [_skipped(tip, branch, root, root_is)], revoked_before
    commits = store.walk_listed(listed, trees=True)
    blobs = _policy_blobs(store, commits)
    policies = Policies(store)
    judges = _judges(commits, set(mainline))
    read = {blob: policies.blob(blob) if blob else PolicyAt()
            for blob in {blobs.get(p) for ps in judges.values() for p in ps}}
    valid = [p.policy for p in read.values() if p.policy is not None]
    # A key revoked anywhere in the history, or at the tip, is revoked for all of it: its
    # holder's signatures prove nothing, whenever they claim to be made.
    tip_policy = policies.at(tip).policy
    revoked = revoked_before.union(*(p.signing.revoked for p in
                                     [*valid, *([tip_policy] if tip_policy else [])]))
    strict: dict[str | None, Policy | str] = {
        blob: replace(at.policy, signing=replace(at.policy.signing,
                                                 revoked=at.policy.signing.revoked | revoked))
        if at.policy is not None else
        (f"it is invalid ({at.problem})" if at.problem else "there is none")
        for blob, at in read.items()}
    by_parent = {c.oid: [(p, strict[blobs.get(p)]) for p in judges[c.oid]] for c in commits}

    def judge(part: Sequence[CommitInfo], in_store: Store) -> list[Violation]:
        return _verdicts(in_store, part, tip, branch, by_parent, valid)

    if len(commits) < SPLIT or not hasattr(os, "fork"):
        violations = judge(commits, store)
    else:  # two processes, one a core, each judging a half with its own git: 10,000
        # commits in 4.25 s instead of 4.94 (docs/performance.md)
        half = len(commits) // 2
        second = _forked(lambda: judge(commits[half:], Store.open(str(store.git_dir))))
        violations = judge(commits[:half], store)
        violations += [v for v in second() if v not in violations]
    return len(commits), violations, revoked


def _verdicts(store: Store, commits: Sequence[CommitInfo], tip: str, branch: str,
              by_parent: dict[str, list[tuple[str, Policy | str]]],
              valid: Sequence[Policy]) -> list[Violation]:
    """Every violation among ``commits``, each judged by the policies ``by_parent`` names
    (a policy, or why there is none at that parent)."""
    bodies = {c.oid: obj[2] for c, obj in zip(commits, store.objects([c.oid for c in commits]),
                                              strict=True) if obj and obj[1] == "commit"}
    # The signatures are checked (CPU, no git) while the facts are read (much of it
    # waiting for git): 5.3 s instead of 5.7 in one process for 10,000 commits.
    needing = [(c.oid, bodies.get(c.oid)) for c in signatures.needing(commits, valid)]
    signed: dict[str, Checked] = {}
    found: list[CommitFacts] = []

    def read_facts() -> None:
        malformed = facts.malformed(store, commits, dict(bodies))
        found.extend(facts.gather(store, commits, tip, malformed, f"refs/heads/{branch}"))

    in_parallel([lambda: signed.update(signatures.of_bodies(needing, store.hexlen)),
                 read_facts])
    violations: list[Violation] = []
    for commit, fact in zip(commits, found, strict=True):
        if not commit.parents:
            violations.append(Violation(commit.oid, None, "a second root commit: no policy "
                                        "before it can judge it", "audit from a later root"))
        for parent, policy in by_parent[commit.oid]:
            if isinstance(policy, str):
                found_here = [Violation(commit.oid, POLICY_FILE, "nothing can judge this "
                                        f"commit: the policy at {parent[:12]} is missing or "
                                        f"invalid ({policy})", "audit from a later root")]
            else:
                found_here = verdict(commit, fact, policy, None, signed)
            violations += [v for v in found_here if v not in violations]
    return violations


T = TypeVar("T")


def _forked(job: Callable[[], T]) -> Callable[[], T]:
    """Start ``job`` in a child process (fork: it has this one's memory, and opens its
    own git processes); call the result to wait for its value. A child that fails fails
    the audit: nothing it did not judge passes."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: judge, hand the verdicts back, and end without cleaning up
        os.close(read_end)
        try:
            data = pickle.dumps((True, job()))
        except BaseException as exc:  # noqa: BLE001 - said to the parent, which fails
            data = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
        with os.fdopen(write_end, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write_end)

    def result() -> T:
        with os.fdopen(read_end, "rb") as answer:
            data = answer.read()
        os.waitpid(pid, 0)
        try:
            done, value = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError):
            done, value = False, "it ended without an answer"
        if not done:
            raise RepositoryError(f"audit's second process failed ({value}).")
        return value  # type: ignore[no-any-return]

    return result


def _judges(commits: Sequence[CommitInfo], mainline: set[str]) -> dict[str, list[str]]:
    """For each commit, the commits whose policy judges it: its parents (the first one's
    always, a merge's every one), and for a commit a merge of the first-parent line
    brings, that merge's first parent (the line's state when it came in)."""
    known = {c.oid: c for c in commits}
    judges = {c.oid: list(c.parents[:1]) if len(c.parents) < 2 else list(c.parents)
              for c in commits}
    seen: set[str] = set()
    for commit in reversed(commits):  # oldest first: what each mainline merge brings
        if commit.oid not in mainline:
            continue
        seen.add(commit.oid)
        todo = list(commit.parents[1:])
        while todo:
            oid = todo.pop()
            if oid in seen or oid not in known:
                continue
            seen.add(oid)
            if commit.parents[0] not in judges[oid]:
                judges[oid].append(commit.parents[0])
            todo += known[oid].parents
        if commit.parents:
            seen.add(commit.parents[0])
    return judges


def _policy_blobs(store: Store, commits: Sequence[CommitInfo]) -> dict[str, str | None]:
    """The policy file's blob at every commit of the walk and at each of their parents:
    from the walk's own changes of ``stageline.yaml``, oldest first, and for parents
    outside the walk (the root, a merged branch's base) one batch of lookups."""
    listed = {c.oid for c in commits}
    blob_at: dict[str, str | None] = {}
    outside = sorted({p for c in commits for p in c.parents if p not in listed})
    infos = store.objects_info([f"{p}:{POLICY_FILE}" for p in outside])
    for parent, info in zip(outside, infos, strict=True):
        blob_at[parent] = info[0] if info and info[1] == "blob" else None
    for commit in reversed(commits):  # --topo-order reversed: parents first
        base = blob_at.get(commit.parents[0]) if commit.parents else None
        own = next((ch for ch in commit.changes if ch.path == POLICY_FILE), None)
        blob_at[commit.oid] = base if own is None else \
            (None if own.new_mode == DELETED_MODE else own.new_oid)
    return blob_at
