"""What the rules need to know of the commits a push brings, gathered in a few batches.

``malformed`` says which objects git's own tools read in more than one way (``fsck``);
``gather`` reads, for every commit at once, the agent trees and approval records the
rules look at, the records at each first parent, the policy a commit brings and the
files it changes under environments/ and settings/ (scanned for secrets). Nothing here
judges: ``rules.judge_commit`` does, on what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from stageline import approval, rules
from stageline.approval import Approval
from stageline.git import fsck
from stageline.git.objects import looks_like_oid
from stageline.git.store import Store
from stageline.git.walk import CommitInfo
from stageline.layout import (
    DELETED_MODE,
    ENV_ROOT,
    GITLINK_MODE,
    POLICY_FILE,
    REGULAR_MODES,
    TREE_MODE,
    approval_path,
    collision,
    env_dir,
)
from stageline.validation import secrets_in

if TYPE_CHECKING:
    from stageline.progress import Progress

SCANNED = ("environments/", "settings/")  # where a pushed file may hold no secret
INDEXED_TREE = 8192  # bytes from which a tree's next version is checked against it

Malformed = Mapping[str, tuple[tuple[str | None, str], ...]]  # commit -> (path, why)


def malformed(store: Store, commits: Sequence[CommitInfo],
              bodies: dict[str, bytes] | None = None) -> Malformed:
    """The objects each commit brings that git's own tools read in more than one way
    (``fsck.py``): the commit object itself, its root tree, every tree its first parent
    does not have (``diff-tree -t`` lists them), and any entry whose object is not of
    the kind its mode says (a "file" that is a directory). Each object is read once:
    ``bodies``, when given, holds commit objects read already (they are not read again)
    and receives those read here (signatures read them too)."""
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
    known = bodies if bodies is not None else {}
    given = [c.oid for c in commits if c.oid in known]
    oids = [c.oid for c in commits if c.oid not in known]
    problems: dict[str, str] = {oid: why for oid in given
                                if (why := fsck.commit_problem(known[oid])) is not None}
    tree_data: dict[str, bytes] = {}
    for oid, obj in zip([*oids, *trees], store.objects([*oids, *trees]), strict=True):
        if obj is None:
            problems[oid] = "it cannot be read"
        elif oid in trees:
            if obj[1] == "tree":
                tree_data[oid] = obj[2]
            else:
                problems[oid] = f"its mode says a directory, but it is a {obj[1]}"
        else:
            if obj[1] == "commit" and bodies is not None:
                bodies[oid] = obj[2]
            if why := (fsck.commit_problem(obj[2]) if obj[1] == "commit" else "not a commit"):
                problems[oid] = why
    problems.update(_tree_problems(store, commits, tree_data, judged))
    for oid, info in zip(files, store.objects_info(list(files)), strict=True):
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


def _tree_problems(store: Store, commits: Sequence[CommitInfo], data: Mapping[str, bytes],
                   judged: set[str]) -> dict[str, str]:
    """Each new tree checked by fsck's rules, once. A large directory whose previous
    version was checked in this push (an environment's directory of thousands of
    agents, changed by commit after commit) is checked by building what it must be from
    that version and the entries the diff says changed, and comparing bytes
    (``fsck.TreeIndex``); only when they differ, or the first time, is it checked whole.
    Trees inside agent directories are also checked for names that are one file on
    another file system."""
    raw_len = store.hexlen // 2
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


def gather(store: Store, commits: Sequence[CommitInfo], tip: str, malformed: Malformed,
           branch: str, server_branches: frozenset[str] = frozenset(),
           now: datetime | None = None, progress: Progress | None = None
           ) -> list[rules.CommitFacts]:
    """What the rules need of each commit, read in one batch: the agent trees and
    approval records at the commit, the records at its first parent where it changes
    them, and the contents of the files it changes under environments/ and settings/
    (scanned for secrets, each blob once)."""
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
    # The first finding of each blob: what it looks like, and on which line.
    secrets = {oid: f"{label} (line {line})" if line else label
               for oid, obj in zip(scanned, store.objects(list(scanned)), strict=True)
               if obj and (first := next(secrets_in(obj[2]), None)) is not None
               for label, line in [first]}
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
    if progress:
        progress.phase("reading changes", len(touched))
    for c, agents in touched:
        if progress:
            progress.advance()
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
            restore_problem = _restore_problem(store, c, target, chain)
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
            secrets=found_secrets, branch=branch, server_branches=server_branches, now=now))
    return facts


def _restore_problem(store: Store, commit: CommitInfo, target: str, chain: set[str]) -> str | None:
    if "\n" in target:
        return f"a rollback names one {rules.RESTORES_TRAILER} commit"
    if not looks_like_oid(target) or len(target) != store.hexlen:
        return f"{rules.RESTORES_TRAILER} must be a full commit id"
    if target not in chain or not commit.parents or \
            not store.is_ancestor(target, commit.parents[0]):
        return (f"{rules.RESTORES_TRAILER} {target[:12]} is not an earlier state of the "
                "branch")
    return None



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


