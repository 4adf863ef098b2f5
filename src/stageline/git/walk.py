"""Walking history: which commits, as git reads them, and what each changed.

A walk is three processes whatever its length: ``rev-list --parents`` (the commits and
their parents, in git's words), ``rev-list --no-walk --format`` (each commit's tree,
author and message, by git's own formatter: no parser of ours reads a commit header),
and ``diff-tree --stdin`` fed ``<commit> <first parent>`` pairs (a merge is judged
against its first parent only, as a combined diff would hide a merge that brings back an
old tree), split between two processes for a long history. git diffs while the commits
are read and parsed here: the two cores share the work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import NamedTuple

from stageline import trailers
from stageline.errors import RepositoryError
from stageline.git.objects import Reader, looks_like_oid
from stageline.git.process import in_parallel

PARALLEL_DIFF = 256  # commits from which first_parent_changes uses two diff-tree processes
# One commit as git reads it: id, tree, parents, author name, email, date ("<seconds> <tz>"
# with --date=raw), committer email, message and the trailers git finds in it, each ended
# by a NUL (git
# stops a message at a NUL of its own, so none falls inside a field); a line feed ends
# each record.
_COMMIT_FORMAT = ("%H%x00%T%x00%P%x00%an%x00%ae%x00%ad%x00%ce%x00%B%x00"
                  "%(trailers:only,unfold)%x00")
_COMMIT_FIELDS = 9


class Change(NamedTuple):
    """One path changed by a commit against its first parent (``git diff-tree --raw``).

    A named tuple rather than a dataclass: a long history has hundreds of thousands,
    and a tuple is made in a third of the time."""

    path: str
    old_mode: str
    new_mode: str
    old_oid: str
    new_oid: str
    status: str


@dataclass(frozen=True)
class CommitInfo:
    oid: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_time: int
    author_tz: str
    message: str
    changes: tuple[Change, ...] = field(default=())
    trailer_lines: str = ""  # the trailers git found in the message (git's own parse)
    committer_email: str = ""

    @cached_property
    def trailers(self) -> dict[str, str]:
        """The message's trailers as git reads them (``trailers.read``), read once."""
        return trailers.read(self.trailer_lines)


def _commit(fields: tuple[str, ...], changes: Sequence[Change]) -> CommitInfo:
    oid, tree, parents, name, email, date, committer_email, message, trailer_lines = fields
    seconds, _, tz = date.partition(" ")
    return CommitInfo(oid, tree, tuple(parents.split()), name, email,
                      int(seconds) if seconds.isdigit() else 0, tz or "+0000", message,
                      tuple(changes), trailer_lines, committer_email)


@cache
def _deeper_than(depth: int) -> re.Pattern[bytes]:
    """A record of ``diff-tree -z`` output (``:<modes> <ids> <status>\\0<path>\\0``)
    whose path is more than ``depth`` directories deep. A match tried from a colon
    inside a path fails: what follows a path is a record or a commit id, neither
    holding a slash. The quantifiers are possessive (no character they take could
    start what follows them, so giving one back never helps): a failed try costs
    less."""
    return re.compile(rb":[^\0]*+\0(?:[^/\0]*+/){%d}[^\0]*+\0" % (depth + 1))


def parse_diff_tree(raw: bytes) -> dict[str, list[Change]]:
    """Parse ``diff-tree --stdin -r -z`` output: a commit id, then its raw entries."""
    # Decoded at once: a NUL never falls inside a UTF-8 sequence, so this is the same
    # as decoding each path.
    tokens = raw.decode("utf-8", "surrogateescape").split("\0")
    changes: dict[str, list[Change]] = {}
    current: list[Change] | None = None
    i, count = 0, len(tokens)
    while i < count:
        token = tokens[i]
        if token[:1] == ":":
            if current is None or i + 1 >= count:
                raise RepositoryError("git diff-tree answered in an unexpected format.")
            old_mode, new_mode, old_oid, new_oid, status = token[1:].split(" ")
            current.append(Change(tokens[i + 1], old_mode, new_mode, old_oid, new_oid, status))
            i += 2
        else:
            if token:
                # Anything else out of place would take a commit's records: refused, never
                # read as a commit.
                oid = token.strip()
                if not looks_like_oid(oid):
                    raise RepositoryError("git diff-tree answered in an unexpected format.")
                current = changes.setdefault(oid, [])
            i += 1
    return changes


class Walker(Reader):
    """Listing commits and their first-parent changes."""

    def rev_list(self, rev_args: Sequence[str], paths: Sequence[str] = ()) \
            -> list[tuple[str, tuple[str, ...]]]:
        """``rev-list --parents``: each listed commit with its parents, in rev-list order
        (``paths`` limit the listing by git's history simplification)."""
        args = ["rev-list", "--parents", *rev_args]
        if paths:
            args += ["--", *paths]
        order: list[tuple[str, tuple[str, ...]]] = []
        for line in self.run(*args).decode().split("\n"):
            if line:
                oid, *parents = line.split(" ")
                order.append((oid, tuple(parents)))
        return order

    def first_parent_chain(self, tip: str, stop: str | None = None) -> list[str]:
        """Commits on ``tip``'s first-parent chain, newest first (down to ``stop``, excluded)."""
        args = ["rev-list", "--first-parent", tip]
        if stop:
            args += ["--not", stop]
        return self.run(*args).decode().split()

    def _commit_fields(self, oids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Each commit's fields as git's formatter gives them (``_COMMIT_FORMAT``)."""
        if not oids:
            return {}
        out = self.run("rev-list", "--no-walk=unsorted", "--stdin", "--no-commit-header",
                       "--date=raw", f"--format={_COMMIT_FORMAT}",
                       input="".join(f"{oid}\n" for oid in oids).encode())
        tokens = out.decode("utf-8", "replace").split("\0")
        found: dict[str, tuple[str, ...]] = {}
        for i in range(0, len(tokens) - 1, _COMMIT_FIELDS):
            record = tokens[i:i + _COMMIT_FIELDS]
            oid = record[0].lstrip("\n")  # the line feed that ends the record before
            if not (looks_like_oid(oid) and looks_like_oid(record[1])
                    and all(looks_like_oid(p) for p in record[2].split())):
                raise RepositoryError("git rev-list answered in an unexpected format.")
            found[oid] = (oid, *record[1:])
        missing = [oid for oid in oids if oid not in found]
        if missing:
            raise RepositoryError(f"commit {missing[0]} cannot be read.")
        return found

    def read_commits(self, oids: Sequence[str],
                     changes: dict[str, list[Change]] | None = None) -> list[CommitInfo]:
        """Commits, in order, as git reads them: parents, tree, author and message from
        git's own formatter (``rev-list --no-walk --format``), never from a parser of our
        own that could read a header differently; with ``changes``, each commit's."""
        fields = self._commit_fields(oids)
        return [_commit(fields[oid], (changes or {}).get(oid, ())) for oid in oids]

    def walk(self, rev_args: Sequence[str], paths: Sequence[str] = (),
             with_changes: bool = True, prune: bool = False,
             trees: bool = False, depth: int | None = None) -> list[CommitInfo]:
        """Commits named by ``rev-list`` arguments, in rev-list order, with their
        first-parent changes (under ``paths`` when given).

        By default ``paths`` also limit ``rev-list`` (git's history simplification). With
        ``prune``, every listed commit is diffed and only those that change ``paths``
        are kept, root commits always (without their changes): cheaper when most commits
        touch the paths anyway.
        """
        return self.walk_listed(self.rev_list(rev_args, () if prune else paths), paths,
                                with_changes, prune, trees, depth)

    def walk_listed(self, order: Sequence[tuple[str, tuple[str, ...]]],
                    paths: Sequence[str] = (), with_changes: bool = True,
                    prune: bool = False, trees: bool = False,
                    depth: int | None = None) -> list[CommitInfo]:
        """``walk`` over commits already listed (by ``rev_list``, or a first-parent
        chain with each commit's first parent). ``trees`` and ``depth`` are
        ``first_parent_changes``'s."""
        oids = [oid for oid, _parents in order]
        if not (with_changes or prune) or not order:
            return self.read_commits(oids)
        changes: dict[str, list[Change]] = {}
        fields: dict[str, tuple[str, ...]] = {}
        in_parallel([
            lambda: fields.update(self._commit_fields(oids)),
            lambda: changes.update(self.first_parent_changes(
                order, paths, roots=not prune, pathspec=not prune, trees=trees, depth=depth))])
        return [_commit(fields[oid], changes.get(oid, ())) for oid, listed_parents in order
                if not prune or oid in changes or not listed_parents]

    def first_parent_changes(self, order: Sequence[tuple[str, Sequence[str]]],
                             paths: Sequence[str] = (), roots: bool = True,
                             pathspec: bool = True, trees: bool = False,
                             depth: int | None = None) -> dict[str, list[Change]]:
        """What each listed commit changed against its first parent (a root commit:
        everything it holds, or nothing without ``roots``), under ``paths`` when given;
        one ``diff-tree --stdin`` run (two for a long history). Commits that changed
        nothing there are left out.

        With ``trees``, the changes also hold an entry for each directory whose tree
        changed (``diff-tree -t``). With ``depth``, only the entries at most ``depth``
        directories deep are kept (``a/b`` is one deep): with ``trees``, a change
        deeper down still shows as its directories' entries. Git's output is cut
        before it is parsed, so a promotion of forty files costs one entry.

        Without ``pathspec``, git diffs whole trees and the paths are kept here:
        a pathspec of several directories makes git test every entry of every
        tree it compares against each of them, which costs more than diffing a
        few files outside the paths when most changes are inside them anyway.
        """
        feed = [f"{oid} {parents[0]}\n" if parents else f"{oid}\n"
                for oid, parents in order if parents or roots]
        if not feed:
            return {}
        args = ["diff-tree", "--stdin", "-r", *(["-t"] if trees else []), "--root", "-z",
                "--no-renames", *(["--", *paths] if paths and pathspec else [])]
        # A long history is split between two diff-tree processes, one per core.
        parts = 2 if len(feed) >= PARALLEL_DIFF and (os.cpu_count() or 1) > 1 else 1
        step = -(-len(feed) // parts)
        changes: dict[str, list[Change]] = {}

        def diff(part: Sequence[str]) -> Callable[[], None]:
            def job() -> None:
                out = self.run(*args, input="".join(part).encode())
                if depth is not None:
                    out = _deeper_than(depth).sub(b"", out)
                changes.update(parse_diff_tree(out))
            return job

        in_parallel([diff(feed[i:i + step]) for i in range(0, len(feed), step)])
        if paths and not pathspec:
            exact = frozenset(paths)
            below = tuple(f"{p}/" for p in paths)
            changes = {oid: kept for oid, found in changes.items()
                       if (kept := [c for c in found
                                    if c.path in exact or c.path.startswith(below)])}
        return changes

    def diff_trees(self, old: str | None, new: str, trees: bool = False) -> list[Change]:
        """Every file that differs from ``old`` to ``new`` (trees or commits; ``old`` None:
        the empty tree); with ``trees``, each directory whose tree differs too (``-t``)."""
        base = old or self.empty_tree
        # diff-tree reads the index on start-up, though two trees do not need it: in a clone
        # of 240,000 files that is 0.2 s on every commit the guard checks. A missing index
        # file reads as an empty one.
        raw = self.run("diff-tree", "-r", *(["-t"] if trees else []), "-z", "--no-renames",
                       base, new,
                       env={"GIT_INDEX_FILE": str(self.git_dir / "stageline-no-index")})
        # The parser of walk's output: two trees give no commit line, so one is put first.
        return parse_diff_tree(f"{self.null_oid}\0".encode() + raw).get(self.null_oid, [])
