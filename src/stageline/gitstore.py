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

import bisect
import contextlib
import gc
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, wraps
from pathlib import Path
from typing import NamedTuple, ParamSpec, TypeVar

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
DIFF_SEGMENT = 512  # commits whose diff-tree output is parsed while git diffs the next ones
PARALLEL_OBJECTS = 1024  # object names from which objects() uses two cat-file processes
# Every git call reads the objects as they are: a replace ref (refs/replace/...) would
# otherwise let a push show the checks a decoy in place of what it really brings.
GIT = ("git", "--no-replace-objects")
# glibc's malloc, left to itself, gives back to the system the memory of every large
# tree git frees and faults it in again for the next: diffing a chain of commits whose
# directories hold thousands of entries spent about as long in the kernel as in git.
# A higher trim threshold (and a fixed mmap threshold, so that glibc does not lower the
# trim threshold again) keeps it; other C libraries ignore the variable. Any tunables
# already set come after these, so they win.
_DIFF_TUNABLES = "glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=16777216"
_OID_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_TRAILER_KEY_RE = re.compile(r"[A-Za-z0-9-]+")
# One commit as git reads it: id, tree, parents, author name, email, date ("<seconds> <tz>"
# with --date=raw) and message, each ended by a NUL (git stops a message at a NUL of its
# own, so none falls inside a field); a line feed ends each record.
_COMMIT_FORMAT = "%H%x00%T%x00%P%x00%an%x00%ae%x00%ad%x00%B%x00"
_COMMIT_FIELDS = 7
EMPTY_TREE = {40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
              64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"}


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


_MODES = {m.lstrip("0").encode(): m for m in ("100644", "100755", "040000", "120000", "160000")}


_LISTED_TREE = re.compile(r"040000 tree ([0-9a-f]+)\t([^\0]*)/([^/\0]*)\0")


@cache
def _tree_entries(raw_len: int) -> re.Pattern[bytes]:
    return re.compile(rb"([0-7]+) ([^\0]+)\0(.{%d})" % raw_len, re.DOTALL)


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
    # The message's trailers, parsed when the commit is made (for a walk, in the thread
    # that reads the commits while git diffs), so always those of its message.
    trailers: dict[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trailers", parse_trailers(self.message))


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
        self.empty_tree = EMPTY_TREE[self.hexlen]
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
        proc = subprocess.run(_argv(args), cwd=self._cwd, input=input, capture_output=True,
                              env=_env(env))
        if check and proc.returncode != 0:
            raise GitFailed(args, proc.stderr.decode("utf-8", "replace"))
        return proc.stdout

    def succeeds(self, *args: str) -> bool:
        """Run a git command whose exit status is the answer."""
        proc = subprocess.run(_argv(args), cwd=self._cwd, capture_output=True)
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
            out = self.run("cat-file", "--batch-check", "--buffer", input=data)
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
        # One regular expression walks the entries (``<mode> <name>\0<raw id>``) in C: a
        # directory of 10,000 agents is parsed on every promotion.
        entries: dict[str, Entry] = {}
        end = 0
        for match in _tree_entries(self.hexlen // 2).finditer(data):
            if match.start() != end:
                break
            mode, name, raw = match.groups()
            entries[name.decode("utf-8", "surrogateescape")] = Entry(
                _MODES.get(mode) or mode.decode().rjust(6, "0"), raw.hex())
            end = match.end()
        if end != len(data):
            raise RepositoryError(f"tree {oid} is malformed.")
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
        return self.read_blobs([oid])[0]

    def read_blobs(self, oids: Sequence[str]) -> list[bytes]:
        """The contents of many files, in order (one batch)."""
        result = []
        for oid, obj in zip(oids, self.read_objects(oids), strict=True):
            if obj is None or obj[0] != "blob":
                raise RepositoryError(f"object {oid} is not a file.")
            result.append(obj[1])
        return result

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
        # ``-d`` lists directories only: ``040000 tree <id>\t<dir>/<name>\0`` each.
        for oid, parent, name in _LISTED_TREE.findall(out.decode("utf-8", "surrogateescape")):
            if (found := result.get(parent)) is not None:
                found[name] = oid
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
        return self.refs("refs/heads/")

    def refs(self, *prefixes: str) -> dict[str, str]:
        """Every ref under the prefixes (such as ``refs/remotes/``) → object id.

        Read as NUL-terminated records: a ref name may hold U+2028, NEL or any other
        character that some line splitter breaks at."""
        out = self.run("for-each-ref", "--format=%(objectname)%00%(refname)%00", *prefixes)
        tokens = out.decode("utf-8", "surrogateescape").split("\0")
        # each record is "<oid>\0<name>\0" and a line feed: the feed begins the next oid
        return {tokens[i + 1]: tokens[i].lstrip("\n") for i in range(0, len(tokens) - 1, 2)}

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
        # Works on the tree's bytes: the entries of the changed names are cut out and the
        # new ones put in their sorted places, so a directory of 10,000 agents costs one
        # pass of a regular expression, not 10,000 parsed and rewritten entries.
        data = self._tree_bytes(tree) if tree else b""
        direct: dict[bytes, Entry | None] = {}
        nested: dict[bytes, dict[tuple[str, ...], Entry | None]] = {}
        for parts, entry in changes.items():
            name = parts[0].encode("utf-8", "surrogateescape")
            if len(parts) == 1:
                direct[name] = entry
            else:
                nested.setdefault(name, {})[parts[1:]] = entry
        keys: list[bytes] = []  # git's order: a tree sorts as if its name ended in "/"
        starts: list[int] = []
        found: dict[bytes, tuple[int, bytes, bytes]] = {}  # name -> (index, mode, raw id)
        end = 0
        for match in _tree_entries(self.hexlen // 2).finditer(data):
            if match.start() != end:
                break
            mode, name, raw = match.groups()
            if name in direct or name in nested:
                found[name] = (len(keys), mode, raw)
            keys.append(name + b"/" if mode == b"40000" else name)
            starts.append(match.start())
            end = match.end()
        if end != len(data):
            raise RepositoryError(f"tree {tree} is malformed.")
        final = dict(direct)
        for name, sub in nested.items():
            have = found.get(name)
            inner = have[2].hex() if have and have[1] == b"40000" else None
            new = self._replace(inner, sub)
            final[name] = None if new is None else Entry(TREE_MODE, new)
        starts.append(len(data))
        drop = {found[n][0] for n in final if n in found}
        pieces: list[tuple[bytes, bytes]] = []  # (sort key, entry bytes) of the new entries
        for name, entry in final.items():
            if entry is not None:
                record = (entry.mode.lstrip("0").encode() + b" " + name + b"\0"
                          + bytes.fromhex(entry.oid))
                pieces.append((name + b"/" if entry.is_tree else name, record))
        pieces.sort()
        dropped = sorted(drop)

        def kept(i: int, j: int) -> list[bytes]:
            """The bytes of entries i to j - 1, less the dropped ones."""
            cuts = [k for k in dropped if i <= k < j]
            bounds = [i, *[b for k in cuts for b in (k, k + 1)], j]
            return [data[starts[a]:starts[b]] for a, b in zip(bounds[::2], bounds[1::2],
                                                            strict=True)]

        out: list[bytes] = []
        i = 0
        for key, record in pieces:
            j = bisect.bisect_left(keys, key)
            out += kept(i, j)
            out.append(record)
            i = j
        out += kept(i, len(keys))
        body = b"".join(out)
        if not body:
            return None
        if body == data and tree:
            return tree
        return self.run("hash-object", "-t", "tree", "-w", "--stdin", input=body).decode().strip()

    def _tree_bytes(self, oid: str) -> bytes:
        obj = self.read_object(oid)
        if obj is None or obj[0] != "tree":
            raise RepositoryError(f"object {oid} is not a tree.")
        return obj[1]

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
            commit = self.commit(tree, [head] if head else [], message, author)
            for step in ("before-journal", "before-ref-update"):
                crash_point(step)
            self.update_ref(ref, commit, head, message.partition("\n")[0])
            crash_point("after-ref-update")
            return commit
        with self._index_lock(finishing=False):
            self._refuse_dirty(paths, head)
            commit = self.commit(tree, [head] if head else [], message, author)
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

    def config(self, key: str) -> str | None:
        out = self.run("config", "--get", key, check=False).decode().strip()
        return out or None

    # -- the staged change (stageline guard) -----------------------------------

    def index_tree(self) -> str:
        """The tree of the index (of ``GIT_INDEX_FILE`` when git commit sets it for its
        hooks), written as tree objects only: no commit, no ref."""
        return self.run("write-tree").decode().strip()

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
        return _parse_diff_tree(f"{self.null_oid}\0".encode() + raw).get(self.null_oid, [])

    def upstream(self) -> str | None:
        """The branch the current branch tracks (``refs/remotes/<remote>/<name>``), or None."""
        out = self.run("rev-parse", "-q", "--symbolic-full-name", "@{upstream}", check=False)
        text = out.decode("utf-8", "surrogateescape").strip()
        return text or None

    def merging(self) -> str | None:
        """The other parent of the merge being concluded (``MERGE_HEAD``), or None."""
        try:
            text = (self.git_dir / "MERGE_HEAD").read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            return None
        return text[0] if text and looks_like_oid(text[0]) else None

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
             trees: bool = False, depth: int | None = None) -> list[CommitInfo]:
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
                                with_changes, prune, trees, depth)

    def walk_listed(self, order: Sequence[tuple[str, tuple[str, ...]]],
                    paths: Sequence[str] = (), with_changes: bool = True,
                    prune: bool = False, trees: bool = False,
                    depth: int | None = None) -> list[CommitInfo]:
        """``walk`` over commits already listed (by ``rev_list``, or a first-parent
        chain with each commit's first parent). ``trees`` and ``depth`` are
        ``first_parent_changes``'s."""
        if not (with_changes or prune) or not order:
            return self.read_commits([oid for oid, _parents in order])
        # git diffs while the commit objects are read and parsed here: the two cores
        # share the work.
        changes: dict[str, list[Change]] = {}
        commits: list[CommitInfo] = []
        in_parallel([
            lambda: commits.extend(self.read_commits([oid for oid, _parents in order])),
            lambda: changes.update(self.first_parent_changes(
                order, paths, roots=not prune, pathspec=not prune, trees=trees, depth=depth))])
        result = []
        for (oid, listed_parents), c in zip(order, commits, strict=True):
            if oid in changes:
                # The commit was made above for this walk alone: its changes are set as
                # its construction would (a frozen dataclass's own way), not copied anew.
                object.__setattr__(c, "changes", tuple(changes[oid]))
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
                             pathspec: bool = True, trees: bool = False,
                             depth: int | None = None) -> dict[str, list[Change]]:
        """What each listed commit changed against its first parent (a root commit:
        everything it holds, or nothing without ``roots``), under ``paths`` when given;
        one ``diff-tree --stdin`` run. Commits that changed nothing there are left out.

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
        tunables = os.environ.get("GLIBC_TUNABLES")
        env = {"GLIBC_TUNABLES": f"{_DIFF_TUNABLES}:{tunables}" if tunables else _DIFF_TUNABLES}
        changes: dict[str, list[Change]] = {}

        def parse(segment: bytes) -> None:
            if depth is not None:
                segment = _deeper_than(depth).sub(b"", segment)
            changes.update(_parse_diff_tree(segment))

        def diff(part: list[str]) -> Callable[[], None]:
            return lambda: self._diff_segments(args, part, env, parse)

        in_parallel([diff(feed[i:i + step]) for i in range(0, len(feed), step)])
        if paths and not pathspec:
            exact = frozenset(paths)
            below = tuple(f"{p}/" for p in paths)
            changes = {oid: kept for oid, found in changes.items()
                       if (kept := [c for c in found
                                    if c.path in exact or c.path.startswith(below)])}
        return changes

    def _diff_segments(self, args: Sequence[str], lines: Sequence[str],
                       env: Mapping[str, str], handle: Callable[[bytes], None]) -> None:
        """Run ``diff-tree --stdin`` over ``lines`` and hand its output to ``handle``
        in pieces as git writes them, each piece the whole output of up to
        ``DIFF_SEGMENT`` consecutive lines: the output is parsed while git diffs on.

        diff-tree echoes, and flushes, a line that names no object; a mark made of
        random bytes after every ``DIFF_SEGMENT`` lines therefore comes back exactly
        where one commit's records end and the next commit's begin, and no path in
        the repository can hold it. (A git that did not echo it would give one piece.)
        """
        mark = f"#stageline-{os.urandom(16).hex()}\n"
        blocks = ["".join(lines[i:i + DIFF_SEGMENT]) for i in range(0, len(lines), DIFF_SEGMENT)]
        cut = mark.encode()
        proc = subprocess.Popen(_argv(args), cwd=self._cwd, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(env))
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
        errors: list[bytes] = []

        def write() -> None:
            with contextlib.suppress(OSError):  # git stopped early: its status says why
                stdin.write(mark.join(blocks).encode())
                stdin.close()

        # git's input is written, and its errors read, beside the reading of its output.
        helpers = [threading.Thread(target=write),
                   threading.Thread(target=lambda: errors.append(stderr.read()))]
        for helper in helpers:
            helper.start()
        try:
            pending = bytearray()
            while chunk := os.read(stdout.fileno(), 1 << 20):
                start = max(0, len(pending) - len(cut) + 1)
                pending += chunk
                while (end := pending.find(cut, start)) >= 0:
                    handle(bytes(pending[:end]))
                    del pending[:end + len(cut)]
                    start = 0
            handle(bytes(pending))
        except BaseException:
            proc.kill()
            raise
        finally:
            for helper in helpers:
                helper.join()
            stdout.close()
            stderr.close()
            proc.wait()
        if proc.returncode != 0:
            raise GitFailed(args, b"".join(errors).decode("utf-8", "replace"))

    def read_commits(self, oids: Sequence[str]) -> list[CommitInfo]:
        """Commits, in order, without their changes, as git reads them: parents, tree,
        author and message from git's own formatter (``rev-list --no-walk --format``),
        never from a parser of our own that could read a header differently."""
        if not oids:
            return []
        out = self.run("rev-list", "--no-walk=unsorted", "--stdin", "--no-commit-header",
                       "--date=raw", f"--format={_COMMIT_FORMAT}",
                       input="".join(f"{oid}\n" for oid in oids).encode())
        tokens = out.decode("utf-8", "replace").split("\0")
        found: dict[str, CommitInfo] = {}
        for i in range(0, len(tokens) - 1, _COMMIT_FIELDS):
            oid, tree, parents, name, email, date, message = tokens[i:i + _COMMIT_FIELDS]
            seconds, _, tz = date.partition(" ")
            oid = oid.lstrip("\n")  # the line feed that ends the record before
            if not (looks_like_oid(oid) and looks_like_oid(tree)
                    and all(looks_like_oid(p) for p in parents.split())):
                raise RepositoryError("git rev-list answered in an unexpected format.")
            found[oid] = CommitInfo(oid, tree, tuple(parents.split()), name, email,
                                    int(seconds) if seconds.isdigit() else 0, tz or "+0000",
                                    message)
        missing = [oid for oid in oids if oid not in found]
        if missing:
            raise RepositoryError(f"commit {missing[0]} cannot be read.")
        return [found[oid] for oid in oids]

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
        # Many are split between two cat-file processes, one per core: resolving
        # ``<commit>:<path>`` names costs git more than reading what they name.
        requests = [request]
        if len(specs) >= PARALLEL_OBJECTS and (os.cpu_count() or 1) > 1:
            cut = request.index(b"\n", len(request) // 2) + 1  # a whole line each side
            requests = [request[:cut], request[cut:]]
        outs: list[bytes] = [b""] * len(requests)

        def read(i: int) -> Callable[[], None]:
            def job() -> None:
                outs[i] = self.run("cat-file", "--batch", "--buffer", input=requests[i])
            return job

        in_parallel([read(i) for i in range(len(requests))])
        out = b"".join(outs)
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
    #
    # Git's index is one file for the whole repository (tens of megabytes in a large
    # organization), so every git command that looks at it reads all of it. An action
    # reads it twice (the check for uncommitted changes, then the update) and writes it
    # once, as a path-limited 'git checkout' reads and writes it once: nothing here
    # refreshes, diffs or rewrites the whole index or work tree.

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

    def listing(self, commit: str, paths: Sequence[str]) -> dict[str, str]:
        """Every file of ``commit`` under ``paths``: path → ``"<mode> <object id>"``."""
        out = self.run("ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths)
        result = {}
        for record in out.split(b"\0"):
            if record:
                meta, _, path = record.partition(b"\t")
                mode, _kind, oid = meta.decode().split(" ")
                result[path.decode("utf-8", "surrogateescape")] = f"{mode} {oid}"
        return result

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
        """The pending record, or None (a record that cannot be read is dropped)."""
        try:
            record = json.loads(self.journal_path.read_text(encoding="utf-8"))
            ref, old, new, paths = record["ref"], record["old"], record["new"], record["paths"]
            if not (isinstance(ref, str) and isinstance(old, str) and isinstance(new, str)
                    and isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
                raise TypeError("unexpected record")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):
            self.clear_journal()
            return None
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


def _argv(args: Sequence[str]) -> list[str]:
    """A git command as every one-shot run starts it: pathspecs taken literally."""
    return [*GIT, "--literal-pathspecs", *args]


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a one-shot git run. Its output is read in large pieces, so
    git need not flush after each record: through a pipe that wakes this process once
    per commit of a long walk (a mark fed to ``diff-tree --stdin`` still flushes)."""
    return {**os.environ, "GIT_FLUSH": "0", **(extra or {})}


def short_ref(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


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


P = ParamSpec("P")
R = TypeVar("R")


def nogc(function: Callable[P, R]) -> Callable[P, R]:
    """Runs ``function`` without the cycle collector. Reading a long history builds
    hundreds of thousands of small objects, none in a cycle, and the collector would
    scan every one of them again each time their number grows by a quarter: a fifth of
    a first ``log`` run on 10,000 commits, a twentieth of ``status`` of 10,000 agents."""
    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return wrapper


def in_parallel(jobs: Sequence[Callable[[], object]]) -> None:
    """Run each job in its own thread, the first in this one; the first exception is
    raised once all have ended. Threads gain only while git works in its own
    processes: at most one job may use the store's long-lived git processes."""
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


@cache
def _deeper_than(depth: int) -> re.Pattern[bytes]:
    """A record of ``diff-tree -z`` output (``:<modes> <ids> <status>\\0<path>\\0``)
    whose path is more than ``depth`` directories deep. A match tried from a colon
    inside a path fails: what follows a path is a record or a commit id, neither
    holding a slash. The quantifiers are possessive (no character they take could
    start what follows them, so giving one back never helps): a failed try costs
    less."""
    return re.compile(rb":[^\0]*+\0(?:[^/\0]*+/){%d}[^\0]*+\0" % (depth + 1))


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
                # Anything else out of place (a mark git no longer echoed verbatim, say)
                # would take a commit's records: refused, never read as a commit.
                oid = token.strip()
                if not looks_like_oid(oid):
                    raise RepositoryError("git diff-tree answered in an unexpected format.")
                current = changes.setdefault(oid, [])
            i += 1
    return changes


__all__ = [
    "Change", "CommitInfo", "Entry", "GitFailed", "Identity", "Store", "StagelineError",
    "crash_point", "is_null_oid", "parse_trailers", "short_ref",
]
