"""Reading objects and refs: one long-lived ``cat-file``, one ``ls-tree`` parser.

Every object name is resolved by git (``<commit>:<path>`` included) through one
long-lived ``cat-file --batch-command`` (``info`` for ids and types, ``contents`` for
bytes; with a git older than 2.36, a ``--batch`` and a ``--batch-check`` process), or,
for many names at once, in a ``cat-file --batch --buffer`` run of its own that git
answers in one stream. Answers are size-delimited, so any bytes an object holds are
read exactly. Listings are read NUL-separated (``-z``, ``%00``): names may hold line
feeds, U+2028 and anything else a line splitter would break at.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stageline.errors import RepositoryError
from stageline.git import fsck
from stageline.git.process import BATCH_COMMAND, Git, in_parallel, version
from stageline.layout import TREE_MODE

# A request to the long-lived cat-file is written whole before its answers are read: it
# must fit in the pipe (64 KiB on Linux, 16 KiB at first on macOS) or both sides could
# wait on each other. Larger requests go to a cat-file run of their own.
FEW_OBJECTS = 256
FEW_BYTES = 12 * 1024
PARALLEL_OBJECTS = 1024  # object names from which objects() uses two cat-file processes


@dataclass(frozen=True)
class Entry:
    """One entry of a tree object: its mode as git lists it, and its object id."""

    mode: str
    oid: str

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


@dataclass(frozen=True)
class Tracking:
    """A branch and the branch it tracks: ``upstream`` as this clone last fetched it
    (``refs/remotes/origin/main``), ``remote_ref`` its name on ``remote``. ``ahead`` and
    ``behind`` count commits, None when the tracked branch is not there."""

    branch: str
    upstream: str
    remote: str
    remote_ref: str
    ahead: int | None
    behind: int | None


@dataclass(frozen=True)
class Listed:
    """One record of ``ls-tree -z``."""

    mode: str
    kind: str
    oid: str
    path: str


def parse_ls_tree(out: bytes) -> list[Listed]:
    """``ls-tree -z`` output: ``<mode> <type> <oid>\\t<path>\\0`` records."""
    found = []
    for record in out.split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, kind, oid = meta.decode().split(" ")
            found.append(Listed(mode, kind, oid, path.decode("utf-8", "surrogateescape")))
    return found


def _request(specs: Sequence[str], prefix: bytes) -> bytes:
    # A name holding a line feed would be two requests: it is asked as "-", which names
    # nothing, so it reads as missing, as it is.
    return b"".join(prefix + (s if "\n" not in s else "-").encode("utf-8", "surrogateescape")
                    + b"\n" for s in specs)


def _header(line: bytes) -> tuple[str, str, int] | None:
    """``<oid> <type> <size>``, or None for ``<name> missing`` (whose name may hold
    spaces) and the like."""
    parts = line.split()
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0].decode(), parts[1].decode(), int(parts[2])


class Reader(Git):
    """Reading a repository's objects and refs."""

    def _ask(self, specs: Sequence[str], contents: bool) -> list[tuple[str, str, bytes] | None]:
        """Ask the long-lived cat-file about a few names (the request fits in the pipe
        whether or not git reads it yet); with ``contents``, their bytes too."""
        if version() >= BATCH_COMMAND:
            proc = self.process("cat-file", "--batch-command")
            prefix = b"contents " if contents else b"info "
        else:
            proc = self.process("cat-file", "--batch" if contents else "--batch-check")
            prefix = b""
        proc.write(_request(specs, prefix))
        result: list[tuple[str, str, bytes] | None] = []
        for _ in specs:
            found = _header(proc.readline())
            if found is None:
                result.append(None)
                continue
            oid, kind, size = found
            result.append((oid, kind, proc.read(size + 1)[:-1] if contents else b""))
        return result

    # -- objects -----------------------------------------------------------

    def objects_info(self, specs: Sequence[str]) -> list[tuple[str, str] | None]:
        """``(oid, type)`` of each object name (``<commit>:<path>`` too), in order, None
        when missing: a few through the long-lived cat-file, many in a run of their own."""
        if not specs:
            return []
        if len(specs) > FEW_OBJECTS or len(_request(specs, b"")) > FEW_BYTES:
            out = self.run("cat-file", "--batch-check", "--buffer", input=_request(specs, b""))
            headers = [_header(line) for line in out.split(b"\n")[:len(specs)]]
            return [(h[0], h[1]) if h else None for h in headers]
        return [(a[0], a[1]) if a else None for a in self._ask(specs, contents=False)]

    def object_info(self, spec: str) -> tuple[str, str] | None:
        return self.objects_info([spec])[0]

    def objects(self, specs: Sequence[str]) -> list[tuple[str, str, bytes] | None]:
        """``(oid, type, content)`` of many object names, in order, None when missing: a
        few through the long-lived cat-file (no process to start), many in a ``cat-file
        --batch`` run of their own whose answer is parsed in one piece."""
        if not specs:
            return []
        request = _request(specs, b"")
        if len(specs) <= FEW_OBJECTS and len(request) <= FEW_BYTES:
            return self._ask(specs, contents=True)
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
        result: list[tuple[str, str, bytes] | None] = []
        pos = 0
        for _ in specs:
            end = out.index(b"\n", pos)
            found = _header(out[pos:end])
            pos = end + 1
            if found is None:
                result.append(None)
                continue
            oid, kind, size = found
            result.append((oid, kind, out[pos:pos + size]))
            pos += size + 1
        return result

    def read_object(self, spec: str) -> tuple[str, bytes] | None:
        """``(type, content)`` of an object, or None when it does not exist."""
        found = self.objects([spec])[0]
        return (found[1], found[2]) if found else None

    def read_objects(self, oids: Sequence[str]) -> list[tuple[str, bytes] | None]:
        """Many objects' ``(type, content)``, in order (None when missing)."""
        return [(found[1], found[2]) if found else None for found in self.objects(oids)]

    def read_tree(self, oid: str) -> dict[str, Entry]:
        """The entries of a tree object, by name (``fsck.entries``, the one reader of a
        tree's bytes)."""
        obj = self.read_object(oid)
        if obj is None or obj[0] != "tree":
            raise RepositoryError(f"object {oid} is not a tree.")
        entries = fsck.entries(obj[1], self.hexlen // 2)
        if entries is None:
            raise RepositoryError(f"tree {oid} is malformed.")
        return {name.decode("utf-8", "surrogateescape"): Entry(mode.decode().zfill(6), raw.hex())
                for mode, name, raw in entries}

    def tree_at(self, commit: str, path: str) -> str | None:
        """The tree id of directory ``path`` in ``commit``, or None."""
        return self.trees_at([(commit, path)])[0]

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

    # -- listings ----------------------------------------------------------

    def ls_tree(self, tree: str, *paths: str, recursive: bool = True,
                directories: bool = False) -> list[Listed]:
        """``ls-tree -z --full-tree`` of ``tree`` (a tree or commit), under ``paths``:
        every file, recursively; with ``directories``, the directories only."""
        flags = ["-r"] if recursive else []
        flags += ["-d"] if directories else []
        return parse_ls_tree(self.run("ls-tree", *flags, "-z", "--full-tree", tree,
                                      *(["--", *paths] if paths else [])))

    def subdirectories(self, commit: str, dirs: Sequence[str]) -> dict[str, dict[str, str]]:
        """The directories directly inside each of ``dirs`` at ``commit``, by name, with
        their tree ids; one ``ls-tree`` whatever their number (a directory that does not
        exist, or is no directory, has none). ``dirs`` must not lie inside one another."""
        result: dict[str, dict[str, str]] = {d: {} for d in dirs}
        if not dirs:
            return result
        for item in self.ls_tree(commit, *[f"{d}/" for d in dirs], recursive=False,
                                 directories=True):
            parent, _, name = item.path.rpartition("/")
            if (found := result.get(parent)) is not None:
                found[name] = item.oid
        return result

    def files(self, tree: str) -> list[tuple[str, str, str]]:
        """Every entry below a tree, recursively: ``(mode, oid, relative path)``.
        Trees are expanded; anything else (blobs, symlinks, gitlinks) is listed."""
        return [(item.mode, item.oid, item.path) for item in self.ls_tree(tree)]

    def listing(self, commit: str, paths: Sequence[str]) -> dict[str, str]:
        """Every file of ``commit`` under ``paths``: path → ``"<mode> <object id>"``."""
        return {item.path: f"{item.mode} {item.oid}" for item in self.ls_tree(commit, *paths)}

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
        out = self.run("symbolic-ref", "-q", "HEAD", check=False)
        return out.decode("utf-8", "surrogateescape").rstrip("\n") or None

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

    def upstream(self) -> str | None:
        """The branch the current branch tracks (``refs/remotes/<remote>/<name>``), or None."""
        out = self.run("rev-parse", "-q", "--symbolic-full-name", "@{upstream}", check=False)
        return out.decode("utf-8", "surrogateescape").rstrip("\n") or None

    def tracking(self, branch: str) -> Tracking | None:
        """What ``branch`` (``refs/heads/...``) tracks, as git's configuration says, and
        how far apart the two are; None when it tracks nothing."""
        out = self.run("for-each-ref", "--format=%(upstream)%00%(upstream:remotename)%00"
                       "%(upstream:remoteref)%00", branch)
        fields = out.decode("utf-8", "surrogateescape").split("\0")
        if len(fields) < 3 or not fields[0]:
            return None
        upstream, remote, remote_ref = fields[:3]
        counted = self.run("rev-list", "--left-right", "--count", f"{branch}...{upstream}",
                           "--", check=False).split()
        if len(counted) != 2:  # the tracked branch is gone, or was never fetched
            return Tracking(branch, upstream, remote, remote_ref, None, None)
        return Tracking(branch, upstream, remote, remote_ref, int(counted[0]), int(counted[1]))

    def config(self, key: str) -> str | None:
        out = self.run("config", "--get", key, check=False)
        return out.decode("utf-8", "surrogateescape").rstrip("\n") or None

    def merging(self) -> str | None:
        """The other parent of the merge being concluded (``MERGE_HEAD``), or None."""
        try:
            text = (self.git_dir / "MERGE_HEAD").read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            return None
        return text[0] if text and looks_like_oid(text[0]) else None


def looks_like_oid(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def short_ref(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def is_null_oid(oid: str) -> bool:
    return bool(oid) and set(oid) == {"0"}
