"""The only module that talks to git.

Everything goes through git's plumbing with machine formats (``-z``, NUL
separators, size-delimited ``cat-file --batch`` records), and through a few
long-lived processes (``cat-file --batch``, ``cat-file --batch-check``,
``mktree --batch``) so that the cost of an action or of a push check does not
grow with the number of commits or agents: nothing here starts a process per
commit or per agent.

The inherited environment is kept as it is, ``GIT_OBJECT_DIRECTORY`` and
``GIT_ALTERNATE_OBJECT_DIRECTORIES`` included: inside a pre-receive hook that is
how the quarantined objects of the push are seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from stageline.errors import Blocked, RepositoryError, StagelineError

TREE_MODE = "040000"
BLOB_MODES = frozenset({"100644", "100755"})
SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"
JOURNAL_NAME = "stageline-pending.json"
# A request to a long-lived cat-file is written whole before its answers are read: it
# must fit in the pipe (64 KiB on Linux, 16 KiB at first on macOS) or both sides could
# wait on each other. Larger requests go to a cat-file run of their own.
FEW_OBJECTS = 256
FEW_BYTES = 12 * 1024
PARALLEL_DIFF = 256  # commits from which first_parent_changes uses two diff-tree processes
# Every git call reads the objects as they are: a replace ref (refs/replace/...) would
# otherwise let a push show the checks a decoy in place of what it really brings.
GIT = ("git", "--no-replace-objects")
_OID_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_TRAILER_KEY_RE = re.compile(r"[A-Za-z0-9-]+")
_AUTHOR_RE = re.compile(r"^(.*?) ?<([^<>]*)> (\d+) ([+-]\d{4})$")  # name <email> time tz


def is_null_oid(oid: str) -> bool:
    return bool(oid) and set(oid) == {"0"}


def looks_like_oid(text: str) -> bool:
    return bool(_OID_RE.match(text))


def crash_point(step: str) -> None:
    """Die here, as a ``kill -9`` would, when ``STAGELINE_CRASH_AT`` names this step.

    Tests reach every step of an action deterministically through it.
    """
    if os.environ.get("STAGELINE_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass(frozen=True)
class Entry:
    """One entry of a tree object."""

    mode: str
    oid: str

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


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

    @cached_property
    def trailers(self) -> dict[str, str]:
        return parse_trailers(self.message)


def parse_trailers(message: str) -> dict[str, str]:
    """The ``Key: value`` trailers of the last paragraph of a commit message.

    Only ``Stageline-*`` keys matter to us; a key given twice keeps both values
    joined by a newline so that a duplicate claim cannot hide behind another.
    """
    if ":" not in message:
        return {}
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    trailers: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(":")
        if not sep or not _TRAILER_KEY_RE.fullmatch(key):
            continue
        value = value.strip()
        trailers[key] = f"{trailers[key]}\n{value}" if key in trailers else value
    return trailers


class GitFailed(RepositoryError):
    """A git command failed; carries its stderr."""

    def __init__(self, args: Sequence[str], stderr: str) -> None:
        first = next((ln for ln in stderr.splitlines() if ln.strip()), "no message")
        super().__init__(f"git {args[0] if args else ''} failed: {first.strip()}")
        self.stderr = stderr


class _BatchProcess:
    """A long-lived ``git cat-file --batch`` / ``--batch-check`` / ``mktree --batch``."""

    def __init__(self, argv: list[str], cwd: str) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def readline(self) -> bytes:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RepositoryError("git stopped answering while reading objects.")
        return line

    def read(self, size: int) -> bytes:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read(size)
        if data is None or len(data) != size:
            raise RepositoryError("git stopped answering while reading objects.")
        return data

    def end_input(self) -> None:
        """Close git's standard input: it finishes and exits."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Store:
    """A git repository (bare or with a work tree), seen through plumbing."""

    def __init__(self, git_dir: Path, work_tree: Path | None, object_format: str) -> None:
        self.git_dir = git_dir
        self.work_tree = work_tree
        self.hexlen = 64 if object_format == "sha256" else 40
        self.null_oid = "0" * self.hexlen
        self._cwd = str(work_tree or git_dir)
        self._batch: _BatchProcess | None = None
        self._check: _BatchProcess | None = None
        self._mktree: _BatchProcess | None = None

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Store:
        where = os.fspath(path) if path is not None else os.getcwd()
        if not os.path.isdir(where):
            raise RepositoryError(f"{where} is not a directory; pass --repo with a Git repository.")
        proc = subprocess.run(
            [*GIT, "rev-parse", "--absolute-git-dir", "--is-bare-repository",
             "--show-object-format"],
            cwd=where, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RepositoryError(f"{where} is not a Git repository; run stageline init or pass --repo.")
        git_dir, bare, object_format = proc.stdout.split("\n")[:3]
        work_tree: Path | None = None
        if bare != "true":
            top = subprocess.run(
                [*GIT, "rev-parse", "--show-toplevel"], cwd=where, capture_output=True, text=True
            )
            if top.returncode == 0 and top.stdout.strip():
                work_tree = Path(top.stdout.strip())
        return cls(Path(git_dir), work_tree, object_format.strip())

    def close(self) -> None:
        procs = [p for p in (self._batch, self._check, self._mktree) if p is not None]
        self._batch = self._check = self._mktree = None
        # All are told to stop before any is waited for: they exit side by side.
        for proc in procs:
            proc.end_input()
        for proc in procs:
            proc.close()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running git -----------------------------------------------------

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> bytes:
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        proc = subprocess.run(
            [*GIT, "--literal-pathspecs", *args],
            cwd=self._cwd, input=input, capture_output=True, env=full_env,
        )
        if check and proc.returncode != 0:
            raise GitFailed(args, proc.stderr.decode("utf-8", "replace"))
        return proc.stdout

    def succeeds(self, *args: str) -> bool:
        """Run a git command whose exit status is the answer."""
        proc = subprocess.run([*GIT, "--literal-pathspecs", *args], cwd=self._cwd,
                              capture_output=True)
        return proc.returncode == 0

    def _proc(self, name: str, argv: list[str]) -> _BatchProcess:
        current: _BatchProcess | None = getattr(self, name)
        if current is None:
            current = _BatchProcess([*GIT, *argv], self._cwd)
            setattr(self, name, current)
        return current

    # -- reading objects -------------------------------------------------

    def object_info(self, spec: str) -> tuple[str, str] | None:
        """``(oid, type)`` of an object name such as ``<commit>:<path>``, or None."""
        if "\n" in spec:
            return None
        proc = self._proc("_check", ["cat-file", "--batch-check"])
        proc.write(spec.encode("utf-8", "surrogateescape") + b"\n")
        parts = proc.readline().split()
        if len(parts) != 3:
            return None
        return parts[0].decode(), parts[1].decode()

    def objects_info(self, specs: Sequence[str]) -> list[tuple[str, str] | None]:
        """``object_info`` for many names, read back in order: a few through the
        long-lived ``cat-file --batch-check``, many in a run of their own that git
        answers in one stream."""
        if not specs:
            return []
        request = [(s if "\n" not in s else "-").encode("utf-8", "surrogateescape") + b"\n"
                   for s in specs]
        data = b"".join(request)
        if len(specs) > FEW_OBJECTS or len(data) > FEW_BYTES:
            out = self.run("cat-file", "--batch-check", input=data)
            return [_info(line) for line in out.split(b"\n")[:len(specs)]]
        proc = self._proc("_check", ["cat-file", "--batch-check"])
        proc.write(data)  # fits in the pipe whether or not git reads it yet
        return [_info(proc.readline()) for _ in specs]

    def read_object(self, spec: str) -> tuple[str, bytes] | None:
        """``(type, content)`` of an object, or None when it does not exist."""
        if "\n" in spec:
            return None
        proc = self._proc("_batch", ["cat-file", "--batch"])
        proc.write(spec.encode("utf-8", "surrogateescape") + b"\n")
        header = proc.readline().split()
        if len(header) != 3:
            return None
        size = int(header[2])
        data = proc.read(size + 1)[:-1]
        return header[1].decode(), data

    def read_tree(self, oid: str) -> dict[str, Entry]:
        """The entries of a tree object, by name."""
        obj = self.read_object(oid)
        if obj is None or obj[0] != "tree":
            raise RepositoryError(f"object {oid} is not a tree.")
        data = obj[1]
        raw_len = self.hexlen // 2
        entries: dict[str, Entry] = {}
        pos = 0
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            mode = data[pos:space].decode().rjust(6, "0")
            name = data[space + 1:nul].decode("utf-8", "surrogateescape")
            oid_hex = data[nul + 1:nul + 1 + raw_len].hex()
            entries[name] = Entry(mode, oid_hex)
            pos = nul + 1 + raw_len
        return entries

    def tree_at(self, commit: str, path: str) -> str | None:
        """The tree id of directory ``path`` in ``commit``, or None."""
        info = self.object_info(f"{commit}:{path}")
        return info[0] if info and info[1] == "tree" else None

    def trees_at(self, specs: Sequence[tuple[str, str]]) -> list[str | None]:
        """``tree_at`` for many ``(commit, path)`` pairs in one batch."""
        infos = self.objects_info([f"{c}:{p}" for c, p in specs])
        return [i[0] if i and i[1] == "tree" else None for i in infos]

    def blob_at(self, commit: str, path: str) -> bytes | None:
        obj = self.read_object(f"{commit}:{path}")
        return obj[1] if obj and obj[0] == "blob" else None

    def read_blob(self, oid: str) -> bytes:
        obj = self.read_object(oid)
        if obj is None or obj[0] != "blob":
            raise RepositoryError(f"object {oid} is not a file.")
        return obj[1]

    def commit_tree_oid(self, commit: str) -> str | None:
        info = self.object_info(f"{commit}^{{tree}}")
        return info[0] if info else None

    def subdirectories(self, commit: str, dirs: Sequence[str]) -> dict[str, dict[str, str]]:
        """The directories directly inside each of ``dirs`` at ``commit``, by name, with
        their tree ids; one ``ls-tree`` whatever their number (a directory that does not
        exist, or is no directory, has none). ``dirs`` must not lie inside one another."""
        result: dict[str, dict[str, str]] = {d: {} for d in dirs}
        if not dirs:
            return result
        out = self.run("ls-tree", "-d", "-z", "--full-tree", commit, "--",
                       *[f"{d}/" for d in dirs])
        for record in out.split(b"\0"):
            meta, _, path = record.partition(b"\t")
            parent, _, name = path.decode("utf-8", "surrogateescape").rpartition("/")
            _mode, kind, oid = meta.decode().split(" ") if meta else ("", "", "")
            if parent in result and kind == "tree":
                result[parent][name] = oid
        return result

    def files(self, tree: str) -> list[tuple[str, str, str]]:
        """Every entry below a tree, recursively: ``(mode, oid, relative path)``.

        Trees are expanded; anything else (blobs, symlinks, gitlinks) is listed.
        """
        out = self.run("ls-tree", "-r", "-z", "--full-tree", tree)
        result = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, _kind, oid = meta.decode().split(" ")
            result.append((mode, oid, path.decode("utf-8", "surrogateescape")))
        return result

    # -- refs --------------------------------------------------------------

    def resolve(self, rev: str) -> str | None:
        """The commit id ``rev`` names, or None."""
        if rev.startswith("-") or "\n" in rev:
            return None
        out = self.run("rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}",
                       check=False)
        text = out.decode().strip()
        return text if looks_like_oid(text) else None

    def head_ref(self) -> str | None:
        """The branch HEAD points at (``refs/heads/...``), or None when detached."""
        out = self.run("symbolic-ref", "-q", "HEAD", check=False).decode().strip()
        return out or None

    def branches(self) -> dict[str, str]:
        """Every local branch: ``refs/heads/name`` → commit id."""
        out = self.run("for-each-ref", "--format=%(refname)%00%(objectname)", "refs/heads/")
        result = {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            name, _, oid = line.partition("\0")
            result[name] = oid
        return result

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.succeeds("merge-base", "--is-ancestor", ancestor, descendant)

    def first_parent_chain(self, tip: str, stop: str | None = None) -> list[str]:
        """Commits on ``tip``'s first-parent chain, newest first (down to ``stop``, excluded)."""
        args = ["rev-list", "--first-parent", tip]
        if stop:
            args += ["--not", stop]
        return self.run(*args).decode().split()

    # -- writing objects ---------------------------------------------------

    def hash_blob(self, data: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", input=data).decode().strip()

    def make_tree(self, entries: Mapping[str, Entry]) -> str:
        """Write a tree object from its entries (``git mktree``, one long-lived process)."""
        proc = self._proc("_mktree", ["mktree", "-z", "--missing", "--batch"])
        records = []
        for name, entry in entries.items():
            kind = "tree" if entry.is_tree else "commit" if entry.mode == GITLINK_MODE else "blob"
            records.append(
                f"{entry.mode} {kind} {entry.oid}\t".encode() + name.encode("utf-8", "surrogateescape")
                + b"\0"
            )
        proc.write(b"".join(records) + b"\0")
        return proc.readline().decode().strip()

    def replace(self, root: str | None, changes: Mapping[str, Entry | None]) -> str:
        """A new root tree: ``root`` with each path set to its entry (None removes it).

        Only the trees on the way to a changed path are read and rewritten, so
        the cost is the depth of the paths and the size of their parent
        directories, not the size of the repository. A directory left empty
        disappears, as git has no empty directories.
        """
        return self._replace(root, {tuple(p.split("/")): e for p, e in changes.items()}) or \
            self.make_tree({})

    def _replace(self, tree: str | None, changes: Mapping[tuple[str, ...], Entry | None]) -> str | None:
        entries = dict(self.read_tree(tree)) if tree else {}
        nested: dict[str, dict[tuple[str, ...], Entry | None]] = {}
        for parts, entry in changes.items():
            if len(parts) == 1:
                if entry is None:
                    entries.pop(parts[0], None)
                else:
                    entries[parts[0]] = entry
            else:
                nested.setdefault(parts[0], {})[parts[1:]] = entry
        for name, sub in nested.items():
            current = entries.get(name)
            new = self._replace(current.oid if current and current.is_tree else None, sub)
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = Entry(TREE_MODE, new)
        if not entries:
            return None
        return self.make_tree(entries)

    def build_tree(self, files: Mapping[str, bytes]) -> str:
        """A tree holding the given files (relative path → content)."""
        return self.replace(None, {p: Entry("100644", self.hash_blob(d)) for p, d in files.items()})

    def commit(self, tree: str, parents: Sequence[str], message: str, author: Identity) -> str:
        """``git commit-tree`` with the actor as author and committer."""
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self.run(*args, input=message.encode(), env=env).decode().strip()

    def update_ref(self, ref: str, new: str, old: str | None, reason: str) -> None:
        """Compare-and-swap: move ``ref`` from ``old`` (None: must not exist) to ``new``."""
        proc = subprocess.run(
            [*GIT, "update-ref", "-m", reason, ref, new, old or self.null_oid],
            cwd=self._cwd, capture_output=True, text=True,
        )
        if proc.returncode == 0:
            return
        lock = _lock_file_named(proc.stderr)
        if lock:
            raise Blocked(f"a Git lock file is in the way ({lock}); remove it if no git process "
                          "is running, then run the command again.")
        raise Blocked(f"the branch {short_ref(ref)} moved while this ran; run it again.")

    def apply(self, ref: str, head: str | None, changes: Mapping[str, Entry | None],
              message: str, author: Identity) -> str | None:
        """One commit on ``ref`` setting each path to its entry; None when nothing changes.

        The new tree is built from the committed ``head`` (never the work tree),
        committed with ``head`` as parent, and published with a compare-and-swap
        ref update, so a crash or a concurrent writer leaves the branch at
        either ``head`` or the new commit. In a clone whose HEAD is ``ref``, the
        index and work tree of the changed paths follow, and only them; a
        record under ``.git/`` lets the next command finish that if this
        process dies after the ref moved.
        """
        paths = list(changes)
        base = self.commit_tree_oid(head) if head else None
        tree = self.replace(base, changes)
        if tree == base:
            return None
        follow = self.checks_out(ref)
        if follow:
            dirty = self.dirty_paths(paths)
            if dirty:
                more = f" (and {len(dirty) - 1} more)" if len(dirty) > 1 else ""
                raise Blocked(f"uncommitted changes in {dirty[0]}{more} would be replaced; "
                              "commit, stash or remove them first.")
        commit = self.commit(tree, [head] if head else [], message, author)
        crash_point("before-journal")
        if follow:
            self.write_journal(ref, head or self.null_oid, commit, paths)
        crash_point("before-ref-update")
        try:
            self.update_ref(ref, commit, head, message.partition("\n")[0])
        except StagelineError:
            self.clear_journal()
            raise
        crash_point("after-ref-update")
        if follow:
            self.sync_paths(commit, paths, head)
            crash_point("after-sync")
            self.clear_journal()
        return commit

    def config(self, key: str) -> str | None:
        out = self.run("config", "--get", key, check=False).decode().strip()
        return out or None

    @classmethod
    def init(cls, path: str, branch: str, bare: bool = False) -> Store:
        """A new repository at ``path`` whose HEAD is the unborn ``branch``."""
        proc = subprocess.run(["git", "init", "-q", *(["--bare"] if bare else []), "-b", branch,
                               path], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RepositoryError(f"cannot create a repository at {path}: "
                                  f"{proc.stderr.strip().splitlines()[-1:]}")
        return cls.open(path)

    def push(self, remote: str, refspec: str, env: Mapping[str, str] | None = None) -> \
            tuple[bool, str]:
        """``git push``; returns whether it was accepted and what the server said."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(["git", "push", "--porcelain", remote, refspec], cwd=self._cwd,
                              capture_output=True, text=True, env=full_env)
        return proc.returncode == 0, proc.stderr + proc.stdout

    @classmethod
    def clone(cls, source: str, path: str) -> Store:
        proc = subprocess.run(["git", "clone", "-q", source, path], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RepositoryError(f"cannot clone {source}: {proc.stderr.strip()}")
        return cls.open(path)

    # -- history -------------------------------------------------------------

    def walk(self, rev_args: Sequence[str], paths: Sequence[str] = (),
             with_changes: bool = True, prune: bool = False,
             trees: bool = False) -> list[CommitInfo]:
        """Commits named by ``rev-list`` arguments, in rev-list order, with their
        first-parent changes (under ``paths`` when given).

        Three processes whatever the number of commits: ``rev-list``, one
        ``diff-tree --stdin`` fed ``<commit> <first parent>`` pairs (a merge is
        judged against its first parent only, as a combined diff would hide a
        merge that brings back an old tree), and one ``cat-file --batch`` for the
        size-delimited commit objects, whose messages are therefore read exactly,
        whatever bytes they hold.

        By default ``paths`` also limit ``rev-list`` (git's history
        simplification). With ``prune``, every listed commit is diffed and only
        those that change ``paths`` are kept, root commits always (without
        their changes): cheaper when most commits touch the paths anyway.
        """
        return self.walk_listed(self.rev_list(rev_args, () if prune else paths), paths,
                                with_changes, prune, trees)

    def walk_listed(self, order: Sequence[tuple[str, tuple[str, ...]]],
                    paths: Sequence[str] = (), with_changes: bool = True,
                    prune: bool = False, trees: bool = False) -> list[CommitInfo]:
        """``walk`` over commits already listed (by ``rev_list``, or a first-parent
        chain with each commit's first parent). With ``trees``, the changes also hold
        an entry for each directory whose tree changed (``diff-tree -t``)."""
        if not (with_changes or prune) or not order:
            return self.read_commits([oid for oid, _parents in order])
        # git diffs while the commit objects are read and parsed here: the two cores
        # share the work.
        changes: dict[str, list[Change]] = {}
        commits: list[CommitInfo] = []
        _in_parallel([
            lambda: commits.extend(self.read_commits([oid for oid, _parents in order])),
            lambda: changes.update(self.first_parent_changes(order, paths, roots=not prune,
                                                             pathspec=not prune, trees=trees))])
        result = []
        for (oid, listed_parents), c in zip(order, commits, strict=True):
            if oid in changes:
                c = CommitInfo(c.oid, c.tree, c.parents, c.author_name, c.author_email,
                               c.author_time, c.author_tz, c.message, tuple(changes[oid]))
            elif prune and listed_parents:
                continue
            result.append(c)
        return result

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

    def first_parent_changes(self, order: Sequence[tuple[str, Sequence[str]]],
                             paths: Sequence[str] = (), roots: bool = True,
                             pathspec: bool = True, trees: bool = False) \
            -> dict[str, list[Change]]:
        """What each listed commit changed against its first parent (a root commit:
        everything it holds, or nothing without ``roots``), under ``paths`` when given;
        one ``diff-tree --stdin`` run. Commits that changed nothing there are left out.

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
        raws: list[bytes] = []

        def diff(part: list[str]) -> Callable[[], None]:
            return lambda: raws.append(self.run(*args, input="".join(part).encode()))

        _in_parallel([diff(feed[i:i + step]) for i in range(0, len(feed), step)])
        raw = b"".join(raws)
        changes = _parse_diff_tree(raw)
        if paths and not pathspec:
            exact = frozenset(paths)
            below = tuple(f"{p}/" for p in paths)
            changes = {oid: kept for oid, found in changes.items()
                       if (kept := [c for c in found
                                    if c.path in exact or c.path.startswith(below)])}
        return changes

    def read_commits(self, oids: Sequence[str]) -> list[CommitInfo]:
        """Commit objects (one ``cat-file --batch`` run), in order, without their changes."""
        return [_commit_of(oid, obj, ()) for oid, obj in zip(oids, self.read_objects(oids),
                                                             strict=True)]

    def read_objects(self, oids: Sequence[str]) -> list[tuple[str, bytes] | None]:
        """Many objects' ``(type, content)``, in order (None when missing)."""
        return [(found[1], found[2]) if found else None for found in self.objects(oids)]

    def objects(self, specs: Sequence[str]) -> list[tuple[str, str, bytes] | None]:
        """``(oid, type, content)`` of many object names (``<commit>:<path>`` too), in
        order, None when missing: a few through the long-lived ``cat-file --batch`` (no
        process to start), many in a ``cat-file --batch`` run of their own whose answer
        is parsed in one piece."""
        if not specs:
            return []
        request = "".join(f"{s}\n" if "\n" not in s else "-\n" for s in specs).encode(
            "utf-8", "surrogateescape")
        result: list[tuple[str, str, bytes] | None] = []
        if len(specs) <= FEW_OBJECTS and len(request) <= FEW_BYTES:
            proc = self._proc("_batch", ["cat-file", "--batch"])
            proc.write(request)  # fits in the pipe whether or not git reads it yet
            for _ in specs:
                header = proc.readline().split()
                found = len(header) == 3 and header[2].isdigit()
                result.append((header[0].decode(), header[1].decode(),
                               proc.read(int(header[2]) + 1)[:-1]) if found else None)
            return result
        out = self.run("cat-file", "--batch", input=request)
        pos = 0
        for _ in specs:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) == 3 and header[2].isdigit():
                size = int(header[2])
                result.append((header[0].decode(), header[1].decode(), out[pos:pos + size]))
                pos += size + 1
            else:
                result.append(None)
        return result

    # -- the work tree of a clone ------------------------------------------

    def dirty_paths(self, paths: Sequence[str]) -> list[str]:
        """Uncommitted changes (staged, unstaged or untracked) under ``paths`` only."""
        if self.work_tree is None or not paths:
            return []
        out = self.run("status", "--porcelain=v1", "-z", "--untracked-files=all",
                       "--no-renames", "--", *paths)
        return [rec[3:].decode("utf-8", "surrogateescape")
                for rec in out.split(b"\0") if len(rec) > 3]

    def checks_out(self, ref: str) -> bool:
        """Whether this is a clone whose work tree follows ``ref``."""
        return self.work_tree is not None and self.head_ref() == ref

    def sync_paths(self, commit: str, paths: Sequence[str], before: str | None) -> None:
        """Make the index and the work tree of ``paths`` match ``commit``, nothing else.

        ``before`` is the commit the index and work tree of those paths held (they
        were clean): a path in neither commit is left out, as git would refuse a
        pathspec that matches nothing.
        """
        if self.work_tree is None or not paths:
            return
        self._wait_for_index_lock()
        commits = [commit] + ([before] if before else [])
        infos = self.objects_info([f"{c}:{p}" for c in commits for p in paths])
        present = {paths[i % len(paths)] for i, info in enumerate(infos) if info}
        tracked = [p for p in paths if p in present]
        if tracked:
            self.run("restore", f"--source={commit}", "--staged", "--worktree", "--", *tracked)

    def _wait_for_index_lock(self) -> None:
        lock = self.git_dir / "index.lock"
        # A git process holding the index lock usually lets go within moments.
        deadline = time.monotonic() + float(os.environ.get("STAGELINE_LOCK_WAIT", "10"))
        while lock.exists():
            if time.monotonic() > deadline:
                raise Blocked(f"a Git lock file is in the way ({lock}); remove it if no git "
                              "process is running, then run any stageline command to finish.")
            time.sleep(0.05)

    # -- the pending-update journal ----------------------------------------

    def _matches(self, commit: str, paths: Sequence[str]) -> bool:
        """Whether the index and work tree of ``paths`` hold ``commit``'s content."""
        return all(self.succeeds("diff-index", "--quiet", *cached, commit, "--", *paths)
                   for cached in ((), ("--cached",)))

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

    def finish_pending(self) -> None:
        """Finish a work-tree update that a killed action left behind.

        The record says which ref moved from which commit to which and which
        paths follow it. If the ref is at the new commit and those paths still
        hold the old content, they are brought up to date; if the ref never
        moved, the record is dropped. Paths that changed since are not touched:
        that is refused, naming them.
        """
        try:
            record = json.loads(self.journal_path.read_text(encoding="utf-8"))
            ref, old, new, paths = record["ref"], record["old"], record["new"], record["paths"]
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, OSError):
            self.clear_journal()
            return
        if self.work_tree is None or self.resolve(ref) != new or self.head_ref() != ref:
            self.clear_journal()
            return
        self._wait_for_index_lock()
        if self._matches(new, paths):
            self.clear_journal()
            return
        if not is_null_oid(old) and not self._matches(old, paths):
            raise Blocked(f"an interrupted stageline update of {', '.join(paths)} cannot be "
                          f"finished because those paths changed since; restore them with "
                          f"'git restore --source=HEAD --staged --worktree -- {' '.join(paths)}'.")
        self.sync_paths(new, paths, None if is_null_oid(old) else old)
        self.clear_journal()


def short_ref(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def _lock_file_named(stderr: str) -> str | None:
    match = re.search(r"'([^']+\.lock)'", stderr)
    if match and "File exists" in stderr:
        return match.group(1)
    return None


def _info(line: bytes) -> tuple[str, str] | None:
    """One ``cat-file --batch-check`` answer: ``<oid> <type> <size>``, or ``<name> missing``
    (whose name may hold spaces)."""
    parts = line.split()
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0].decode(), parts[1].decode()


def _in_parallel(jobs: Sequence[Callable[[], object]]) -> None:
    """Run each job in its own thread (git does the work, each in its own process);
    the first exception is raised once all have ended."""
    errors: list[BaseException] = []

    def run(job: Callable[[], object]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(job,)) for job in jobs[1:]]
    for worker in workers:
        worker.start()
    try:
        run(jobs[0])
    finally:
        for worker in workers:
            worker.join()
    if errors:
        raise errors[0]


def _parse_diff_tree(raw: bytes) -> dict[str, list[Change]]:
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
                current = changes.setdefault(token.strip(), [])
            i += 1
    return changes


def _commit_of(oid: str, obj: tuple[str, bytes] | None, changes: tuple[Change, ...]) -> CommitInfo:
    if obj is None or obj[0] != "commit":
        raise RepositoryError(f"commit {oid} cannot be read.")
    return _parse_commit(oid, obj[1], changes)


def _parse_commit(oid: str, data: bytes, changes: tuple[Change, ...]) -> CommitInfo:
    header, _, body = data.partition(b"\n\n")
    tree = ""
    parents: list[str] = []
    author_name = author_email = ""
    author_time = 0
    author_tz = "+0000"
    for line in header.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value.decode()
        elif key == b"parent":
            parents.append(value.decode())
        elif key == b"author" and not author_email:
            text = value.decode("utf-8", "replace")
            match = _AUTHOR_RE.match(text)
            if match:
                author_name, author_email = match.group(1), match.group(2)
                author_time, author_tz = int(match.group(3)), match.group(4)
    return CommitInfo(oid, tree, tuple(parents), author_name, author_email, author_time, author_tz,
                      body.decode("utf-8", "replace"), changes)


__all__ = [
    "Change", "CommitInfo", "Entry", "GitFailed", "Identity", "Store", "StagelineError",
    "crash_point", "is_null_oid", "parse_trailers", "short_ref",
]
