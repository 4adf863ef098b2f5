"""A clone's index and work tree kept in step with an action, and nothing else.

Git's index is one file for the whole repository (tens of megabytes in a large
organization), so every git command that looks at it reads all of it. An action reads it
twice (the check for uncommitted changes, then the update) and writes it once, as a
path-limited ``git checkout`` reads and writes it once: nothing here refreshes, diffs or
rewrites the whole index or work tree.

An action takes git's ``index.lock`` first (so a busy index stops it before anything
changed), writes a journal naming the update before the ref moves, and removes it once
the index and files of the replaced paths follow: a command killed half way is finished
by the next one (``finish_pending``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stageline.errors import Blocked, RepositoryError, StagelineError
from stageline.git.objects import Entry, is_null_oid
from stageline.git.walk import Walker
from stageline.git.write import Identity, Writer

JOURNAL_NAME = "stageline-pending.json"


def crash_point(step: str) -> None:
    """Die here, as a ``kill -9`` would, when ``STAGELINE_CRASH_AT`` names this step.

    Tests reach every step of an action deterministically through it.
    """
    if os.environ.get("STAGELINE_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


class Worktree(Writer, Walker):
    """Actions on a branch: one commit, and in a clone whose HEAD is the branch, the index
    and files of the changed paths."""

    def apply(self, ref: str, head: str | None, changes: Mapping[str, Entry | None],
              message: str, author: Identity, sign: bool = False) -> str | None:
        """One commit on ``ref`` setting each path to its entry; None when nothing changes.

        The new tree is built from the committed ``head`` (never the work tree),
        committed with ``head`` as parent, and published with a compare-and-swap
        ref update, so a crash or a concurrent writer leaves the branch at
        either ``head`` or the new commit.

        In a clone whose HEAD is ``ref``, the index and work tree of the changed
        paths follow, and only them. The index lock is taken first, so a busy
        index stops the action before anything changed; under it, a record
        under ``.git/`` names the update before the ref moves, which lets the
        next command finish it if this process dies half way (``finish_pending``).
        """
        paths = list(changes)
        base = self.commit_tree_oid(head) if head else None
        tree = self.replace(base, changes)
        if tree == base:
            return None
        if not self.checks_out(ref):
            commit = self.commit(tree, [head] if head else [], message, author, sign)
            for step in ("before-journal", "before-ref-update"):
                crash_point(step)
            self.update_ref(ref, commit, head, message.partition("\n")[0])
            crash_point("after-ref-update")
            return commit
        with self._index_lock(finishing=False):
            self._refuse_dirty(paths, head)
            commit = self.commit(tree, [head] if head else [], message, author, sign)
            crash_point("before-journal")
            self.write_journal(ref, head or self.null_oid, commit, paths)
            crash_point("before-ref-update")
            try:
                self.update_ref(ref, commit, head, message.partition("\n")[0])
            except StagelineError:
                self.clear_journal()
                raise
            crash_point("after-ref-update")
            # the index of the paths is head's (they were clean)
            infos = self.objects_info([f"{c}:{p}" for c in (commit, head) if c for p in paths])
            self.sync_paths(commit, [p for i, p in enumerate(paths)
                                     if any(infos[i::len(paths)])])
            crash_point("after-sync")
            self.clear_journal()
        return commit

    def refuse_uncommitted(self, ref: str, head: str | None, paths: Sequence[str]) -> None:
        """Refuse, as ``apply`` does, when a clone following ``ref`` holds uncommitted
        changes under ``paths`` (for ``--dry-run``, which makes no commit). Like
        ``apply``'s check it writes nothing, not even the index's stat cache."""
        if self.checks_out(ref):
            self._refuse_dirty(paths, head)

    def _refuse_dirty(self, paths: Sequence[str], head: str | None) -> None:
        dirty = self.dirty_paths(paths, head)
        if dirty:
            more = f" (and {len(dirty) - 1} more)" if len(dirty) > 1 else ""
            raise Blocked(f"uncommitted changes in {dirty[0]}{more} would be replaced; "
                          "commit, stash or remove them first.")

    def tracked(self, path: Path) -> bool:
        """Whether git tracks a file at or below ``path``, a path in the work tree."""
        return bool(self.run("ls-files", "-z", "--", str(path)))

    def index_tree(self) -> str:
        """The tree of the index (of ``GIT_INDEX_FILE`` when git commit sets it for its
        hooks), written as tree objects only: no commit, no ref."""
        return self.run("write-tree").decode().strip()

    def checks_out(self, ref: str) -> bool:
        """Whether this is a clone whose work tree follows ``ref``."""
        return self.work_tree is not None and self.head_ref() == ref

    @property
    def index_file(self) -> Path:
        named = os.environ.get("GIT_INDEX_FILE")
        return Path(self._cwd, named) if named else self.git_dir / "index"

    def dirty_paths(self, paths: Sequence[str], head: str | None) -> list[str]:
        """Uncommitted changes (staged, unstaged or untracked) under ``paths`` only.

        ``git status`` limited to the paths and without its untracked-file scan
        (which hashes the name of every file in the index) finds the staged and
        unstaged changes; the untracked files are the files under the paths that
        ``head`` does not have, less the ignored ones. ``GIT_OPTIONAL_LOCKS=0``
        keeps git from rewriting the whole index to save what it refreshed.
        """
        if self.work_tree is None or not paths:
            return []
        out = self.run("status", "--porcelain=v1", "-z", "--untracked-files=no", "--no-renames",
                       "--", *paths, env={"GIT_OPTIONAL_LOCKS": "0"})
        dirty = [rec[3:].decode("utf-8", "surrogateescape")
                 for rec in out.split(b"\0") if len(rec) > 3]
        tracked = self.listing(head, paths) if head else {}
        return dirty + self.untracked([p for p in self.work_files(paths) if p not in tracked])

    def untracked(self, files: Sequence[str]) -> list[str]:
        """Those of ``files`` that the index does not have and that are not ignored."""
        if not files:
            return []
        out = self.run("ls-files", "-z", "--others", "--exclude-standard", "--", *files)
        return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]

    def work_files(self, paths: Sequence[str]) -> list[str]:
        """The files and symbolic links of the work tree under ``paths``."""
        assert self.work_tree is not None
        found = []
        for path in paths:
            full = self.work_tree / path
            if full.is_symlink() or full.is_file():
                found.append(path)
                continue
            for top, dirs, files in os.walk(full):
                rel = os.path.relpath(top, self.work_tree).replace(os.sep, "/")
                found += [f"{rel}/{name}" for name in files]
                found += [f"{rel}/{name}" for name in dirs if os.path.islink(os.path.join(top, name))]
                dirs[:] = [d for d in dirs if d != ".git"]
        return found

    def sync_paths(self, commit: str, paths: Sequence[str]) -> None:
        """Make the index and the work tree of ``paths`` match ``commit``, nothing else.

        The caller holds the index lock, and gives only paths that ``commit`` or
        the index has (git refuses a pathspec that matches nothing). ``git
        restore`` (path-limited, and deleting what ``commit`` no longer has)
        works on a copy of the index (a hard link: git writes a new file and
        renames it, never in place), which then replaces the index in one
        rename: the index is all old or all new, while the files are written one
        by one.
        """
        if self.work_tree is None or not paths:
            return
        index, scratch = self.index_file, self._scratch_index
        self._remove_scratch()
        if index.exists():
            try:
                os.link(index, scratch)
            except OSError:
                shutil.copyfile(index, scratch)
        self.run("restore", f"--source={commit}", "--staged", "--worktree", "--", *paths,
                 env={"GIT_INDEX_FILE": str(scratch)})
        crash_point("after-worktree")
        if scratch.exists():
            os.replace(scratch, index)

    # -- the index lock ----------------------------------------------------

    @property
    def _scratch_index(self) -> Path:
        return self.index_file.with_name("stageline-index")

    def _remove_scratch(self) -> None:
        for path in (self._scratch_index, self._scratch_index.with_name("stageline-index.lock")):
            path.unlink(missing_ok=True)

    @contextmanager
    def _index_lock(self, finishing: bool) -> Iterator[None]:
        """Hold git's ``index.lock``, as git does while it updates the index.

        The lock file says which stageline process holds it; one that a killed
        stageline process left is taken over (``_drop_stale_lock``). Any other is
        waited for (``STAGELINE_LOCK_WAIT`` seconds, 10 by default: a git process
        usually lets go within moments), then named.
        """
        lock = Path(f"{self.index_file}.lock")
        mark = _lock_mark(os.getpid())
        deadline = time.monotonic() + float(os.environ.get("STAGELINE_LOCK_WAIT", "10"))
        while True:
            try:
                self._create_lock(lock, mark)
                break
            except FileExistsError:
                if self._drop_stale_lock():
                    continue
                if time.monotonic() > deadline:
                    then = ("run any stageline command to finish" if finishing
                            else "run the command again")
                    raise Blocked(f"a Git lock file is in the way ({lock}); remove it if no "
                                  f"git process is running, then {then}.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            self._remove_scratch()
            if _read_head(lock) == mark:
                lock.unlink(missing_ok=True)

    def _create_lock(self, lock: Path, mark: bytes) -> None:
        """Create ``lock`` holding ``mark``, or raise FileExistsError.

        The mark is written under a name of this process's own, which is then
        hard-linked to the lock's (failing if it exists): the lock never exists
        empty, as a lock created and then written would if the process were
        killed in between, and an empty lock is what a starting git process
        makes, which must never be taken over.
        """
        own = self.git_dir / f"stageline-lock-{os.getpid()}"
        own.write_bytes(mark)
        try:
            crash_point("before-index-lock")
            os.link(own, lock)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (or the index elsewhere): create, then write
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, mark)
            finally:
                os.close(fd)
        finally:
            own.unlink(missing_ok=True)

    def _drop_stale_lock(self) -> bool:
        """Remove an index lock that a stageline process on this host left when it was
        killed (its lock file names it, and it is gone); whether there was one. The
        marks such processes wrote and had not yet put in place go as well.

        Under such a lock nothing but stageline wrote the index, and what it
        left is either the old index or a complete new one: removing the lock
        loses nothing. A pending update it left is finished under a new lock.
        """
        for own in self.git_dir.glob("stageline-lock-*"):
            if _stale(_read_head(own)):
                own.unlink(missing_ok=True)
        lock = Path(f"{self.index_file}.lock")
        if not _stale(_read_head(lock)):
            return False
        self._remove_scratch()
        lock.unlink(missing_ok=True)
        return True

    # -- the pending-update journal ----------------------------------------

    @property
    def journal_path(self) -> Path:
        return self.git_dir / JOURNAL_NAME

    def write_journal(self, ref: str, old: str, new: str, paths: Sequence[str]) -> None:
        tmp = self.journal_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"ref": ref, "old": old, "new": new, "paths": list(paths)}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.journal_path)

    def clear_journal(self) -> None:
        self.journal_path.unlink(missing_ok=True)

    def _read_journal(self) -> tuple[str, str, str, list[str]] | None:
        """The pending record, or None when there is none. A record that cannot be read
        is not deleted (it may name an update half done): the command stops, naming it."""
        try:
            record = json.loads(self.journal_path.read_text(encoding="utf-8"))
            ref, old, new, paths = record["ref"], record["old"], record["new"], record["paths"]
            if not (isinstance(ref, str) and isinstance(old, str) and isinstance(new, str)
                    and isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
                raise TypeError("unexpected record")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):
            raise RepositoryError(
                f"{self.journal_path} records an interrupted stageline update but cannot be "
                "read; check 'git status' and the files it names, then remove it.") from None
        return ref, old, new, paths

    def finish_pending(self) -> None:
        """Finish a work-tree update that a killed action left behind.

        The record says which ref moved from which commit to which and which
        paths follow it. If the ref never moved, the record is dropped. If it
        is at the new commit, the paths are brought up to date, provided every
        file under them is one the interrupted update could have left: its
        index entry and its content are the old commit's or the new commit's,
        or the file is missing or empty (git was writing it). Anything else is
        someone's edit: it is refused, naming the file, and nothing is touched.
        """
        if not self.journal_path.exists():
            if self.work_tree is not None:
                self._drop_stale_lock()
            return
        if self.work_tree is None:
            self.clear_journal()
            return
        with self._index_lock(finishing=True):
            record = self._read_journal()  # another process may have finished it meanwhile
            if record is None:
                return
            ref, old, new, paths = record
            if self.resolve(ref) != new or self.head_ref() != ref:
                self.clear_journal()
                return
            state = self._pending_state(None if is_null_oid(old) else old, new, paths)
            # a pathspec must match the new commit or the index, or git refuses it
            known = [p for p in paths if any(f == p or f.startswith(f"{p}/")
                                             for f in state.indexed | state.wanted)]
            if state.changed:
                first, more = state.changed[0], len(state.changed) - 1
                which = f"{first} (and {more} more)" if more else first
                raise Blocked(f"an interrupted stageline update of {', '.join(paths)} cannot "
                              f"be finished because {which} changed since; keep what you need, "
                              f"move {'them' if more else 'it'} out of the way, then run 'git "
                              "restore --source=HEAD --staged --worktree -- "
                              f"{' '.join(shlex.quote(p) for p in known)}'.")
            if not state.current:
                self.sync_paths(new, known)
            self.clear_journal()

    def _pending_state(self, old: str | None, new: str, paths: Sequence[str]) -> _PendingState:
        """How the index and the files under ``paths`` stand against an update from
        ``old`` to ``new``: what the update cannot have left (an index entry or a
        content that is neither commit's, a file neither has), and whether they already
        are ``new``'s."""
        assert self.work_tree is not None
        wanted = self.listing(new, paths)
        sides = [wanted] + ([self.listing(old, paths)] if old else [])
        known = set().union(*sides)
        blobs = [{path: entry.split(" ")[1] for path, entry in side.items()} for side in sides]
        changed = []
        indexed: dict[str, str] = {}
        for record in self.run("ls-files", "-s", "-z", "--", *paths).split(b"\0"):
            if record:
                meta, _, raw = record.partition(b"\t")
                mode, oid, stage = meta.decode().split(" ")
                path = raw.decode("utf-8", "surrogateescape")
                indexed[path] = f"{mode} {oid}"
                if stage != "0" or all(side.get(path) != oid for side in blobs):
                    changed.append(path)
        found: dict[str, str] = {}
        files, unknown = [], []
        for path in self.work_files(paths):
            full = self.work_tree / path
            if path not in known:
                unknown.append(path)  # an ignored file is no one's edit, as for an action
            elif "\n" in path:
                changed.append(path)
            elif full.is_symlink():
                found[path] = self._blob_id(os.readlink(full).encode("utf-8", "surrogateescape"))
            elif full.stat().st_size:
                files.append(path)
            else:
                found[path] = ""  # an empty file: one git had not written yet
        if files:
            out = self.run("hash-object", "--stdin-paths",
                           input="".join(f"{p}\n" for p in files).encode("utf-8",
                                                                         "surrogateescape"))
            found.update(zip(files, out.decode().split(), strict=True))
        changed += [path for path, oid in found.items()
                    if oid and all(side.get(path) != oid for side in blobs)]
        changed += self.untracked(unknown)
        return _PendingState(sorted(set(changed)), set(indexed), set(wanted),
                             indexed == wanted and found == blobs[0])

    def _blob_id(self, data: bytes) -> str:
        import hashlib  # only an interrupted update needs it (hashlib and socket: 7 ms a start)

        algo = hashlib.sha256 if self.hexlen == 64 else hashlib.sha1
        return algo(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class _PendingState:
    changed: list[str]  # files an interrupted update cannot have left
    indexed: set[str]  # the index entries under the paths
    wanted: set[str]  # the new commit's files under the paths
    current: bool  # the index and the files already are the new commit's


def _host() -> str:
    import socket  # only actions in a clone take the index lock

    return socket.gethostname()


def _lock_mark(pid: int) -> bytes:
    return f"stageline pid={pid} host={_host()}\n".encode()


def _stale(mark: bytes | None) -> bool:
    """Whether a lock mark names a stageline process of this host that is gone."""
    match = re.fullmatch(rb"stageline pid=(\d+) host=(\S*)\n", mark or b"")
    if not match or match.group(2).decode("utf-8", "replace") != _host():
        return False
    pid = int(match.group(1))
    return pid != os.getpid() and not _alive(pid)


def _read_head(path: Path) -> bytes | None:
    """The first bytes of a file, or None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(256)
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


