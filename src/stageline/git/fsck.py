"""git's own rules for well-formed commits and trees, for the objects a push brings.

git accepts, without ``receive.fsckObjects`` (and for some rules even with it), objects
that its tools then read in more than one way: a tree listing a name twice (a lookup by
path finds the first entry, a checkout the last), a tree out of order (a lookup stops
early), a mode git never writes (``100664``: a tree id changes with no change a diff
prints), a commit whose ``parent`` line comes after its ``committer`` (git: a root
commit) or that names two authors (``%an`` reads the last, a header lookup the first).
The hook judges what git reads, and git reads these ambiguously: they are refused, so
that every object the rules judge has exactly one reading. The rules are fsck's
(``fsck.c``: ``fsck_tree``, ``fsck_commit``, ``fsck_ident``), with what fsck only warns
about (modes, zero-padded modes, null ids) made errors. ``tests/test_fsck.py`` compares
them with git's fsck over generated objects.

Nothing here reads anything for its meaning: parents, authors and trees are what git
says they are (``rev-list``, ``diff-tree``, ``cat-file``); these functions only say
whether an object is one git writes itself.
"""

from __future__ import annotations

import bisect
import operator
import re

from stageline.layout import stands_for

TREE_MODES = frozenset({b"100644", b"100755", b"120000", b"160000", b"40000"})
# A tree is entries of ``<octal mode> <name>\0<raw id>``. ``_CANONICAL`` says the bytes are
# nothing else, with modes git writes; ``_NAMES`` then lists each entry's name, with "/"
# after a directory's (git's order sorts it so). Both run in C: a directory of 10,000
# agents is checked on every commit that changes it.
_CANONICAL = {n: re.compile(rb"(?:(?:100644|100755|120000|160000|40000) [^\0]*+\0.{%d})*+" % n,
                            re.DOTALL) for n in (20, 32)}
_ANY_MODE = {n: re.compile(rb"([0-7]{1,7}) ([^\0]*+)\0(.{%d})" % n, re.DOTALL) for n in (20, 32)}
_NAMES = {n: re.compile(rb"(4)?0*[0-7]+ ([^\0]*+)\0.{%d}" % n, re.DOTALL) for n in (20, 32)}
# Encodings git may re-encode a commit from without creating or hiding a line feed:
# UTF-8, ASCII, and the ASCII-compatible 8-bit sets. UTF-7 ("+AAo-" is a line feed),
# UTF-16/32, ISO-2022 and EBCDIC would let an extra header hold a second author.
_ONE_READING = re.compile(rb"(?i)utf-?8|us-ascii|ascii|iso-8859-[0-9]{1,2}|latin-?[0-9]|"
                          rb"(?:windows|cp)-?125[0-8]")
MAX_HEADER = 65536  # bytes: a commit's header is a few hundred, a signed merge's a few K
_IDENT = re.compile(rb"[^<>\n]* <[^<>\n]*> (?:0|[1-9][0-9]{0,17}) [+-][0-9]{4}")
_SPANS = {n: re.compile(rb"(4)?0*[0-7]+ ([^\0]*+)\0.{%d}" % n, re.DOTALL) for n in (20, 32)}


def entries(data: bytes, raw_len: int) -> list[tuple[bytes, bytes, bytes]] | None:
    """A tree's entries as written, ``(mode, name, raw id)``, or None when the bytes are
    not a tree: the one reader of a tree's bytes (``tests/test_fsck.py`` holds it to
    ``ls-tree``)."""
    found = []
    end = 0
    for match in _ANY_MODE[raw_len].finditer(data):
        if match.start() != end:
            return None
        found.append((match.group(1), match.group(2), match.group(3)))
        end = match.end()
    return found if end == len(data) else None


def tree_problem(data: bytes, raw_len: int) -> str | None:
    """Why a tree object's content is not one git writes, or None.

    ``raw_len`` is the length of a raw object id: 20 (SHA-1) or 32 (SHA-256).
    """
    if not _CANONICAL[raw_len].fullmatch(data):
        return _unreadable(data, raw_len)
    found = _NAMES[raw_len].findall(data)
    names = [name for _tree, name in found]
    # Names git refuses (empty, ".", "..", with a slash) or that a checkout may read as
    # ".git" (fsck's hasDotgit: case, trailing dots, ignorable code points, "GIT~1") all
    # start with "." or hold "~", "/" or a byte outside ASCII: only then is each looked at.
    joined = b"\0" + b"\0".join(names) + b"\0"
    if b"\0." in joined or b"\0\0" in joined or b"~" in joined or b"/" in joined \
            or not joined.isascii():
        for name in names:
            if name_refused(name):
                return f"{_show(name)} is a name git refuses in a tree"
    # A name's NUL and a null id make a run no other entry has (a mode starts with a digit).
    if b"\0" * (raw_len + 1) in data:
        name = next(n for _m, n, raw in entries(data, raw_len) or [] if raw == bytes(raw_len))
        return f"{_show(name)} points at no object"
    keys = [name + b"/" if tree else name for tree, name in found]
    if not all(map(operator.lt, keys, keys[1:])) or len(set(names)) != len(names):
        seen: set[bytes] = set()
        for i, name in enumerate(names):
            if name in seen:
                return f"it lists {_show(name)} twice"
            if i and keys[i] <= keys[i - 1]:
                return f"its entries are not in git's order at {_show(name)}"
            seen.add(name)
    return None


def name_refused(name: bytes) -> bool:
    """An entry name git refuses (fsck), or that a checkout may read as ``.git``."""
    return not name or name in (b".", b"..") or b"/" in name or \
        stands_for(name.decode("utf-8", "replace"), ".git")


class TreeIndex:
    """A tree known to be one git writes, kept as its entries in git's order, so that the
    next version of the same directory (one entry changed in a directory of 10,000
    agents) is checked by building what it must be and comparing bytes, instead of
    checking every entry again: if a canonical tree with the changes a diff reports is
    byte for byte the new tree, the new tree is canonical. A mismatch proves nothing
    either way; the caller then checks the new tree whole (``tree_problem``)."""

    def __init__(self, keys: list[bytes], chunks: list[bytes]) -> None:
        self.keys = keys  # git's sort key of each entry: its name, "/" after a directory's
        self.chunks = chunks  # each entry's bytes

    @classmethod
    def of(cls, data: bytes, raw_len: int) -> TreeIndex:
        """The index of a tree ``tree_problem`` found canonical."""
        keys, chunks = [], []
        for match in _SPANS[raw_len].finditer(data):
            keys.append(match.group(2) + b"/" if match.group(1) else match.group(2))
            chunks.append(match.group(0))
        return cls(keys, chunks)

    def changed(self, changes: list[tuple[bytes, bytes | None, bytes]]) -> TreeIndex | None:
        """This tree with each ``(name, mode, raw id)`` set (mode None: removed), or None
        when a change is not one git writes (a name it refuses, a null id)."""
        keys, chunks = self.keys.copy(), self.chunks.copy()
        for name, mode, raw in changes:
            for key in (name, name + b"/"):
                i = bisect.bisect_left(keys, key)
                if i < len(keys) and keys[i] == key:
                    del keys[i], chunks[i]
            if mode is None:
                continue
            if mode not in TREE_MODES or name_refused(name) or not raw.strip(b"\0"):
                return None
            key = name + b"/" if mode == b"40000" else name
            i = bisect.bisect_left(keys, key)
            keys.insert(i, key)
            chunks.insert(i, mode + b" " + name + b"\0" + raw)
        return TreeIndex(keys, chunks)

    def data(self) -> bytes:
        return b"".join(self.chunks)


def _unreadable(data: bytes, raw_len: int) -> str:
    """What is wrong with a tree that is not entries of git's modes."""
    for mode, name, _raw in entries(data, raw_len) or []:
        if mode not in TREE_MODES:
            return f"{_show(name)} has mode {mode.decode()}, which git does not write"
    return "it cannot be read as a tree"


def commit_problem(data: bytes) -> str | None:
    """Why a commit object's header is not one git writes, or None: ``tree``, then its
    ``parent`` lines, one ``author``, one ``committer``, each as fsck checks them, then
    other headers (``encoding``, ``gpgsig``, ``mergetag``, ...) that repeat none of these;
    an ``encoding`` git reads the header alike in; at most ``MAX_HEADER`` bytes."""
    end = data.find(b"\n\n", 0, MAX_HEADER + 2)
    if end < 0:
        return "its header has no end" if len(data) <= MAX_HEADER else \
            f"its header is over {MAX_HEADER // 1024} KiB"
    header = data[:end]
    if b"\0" in header:
        return "its header holds a NUL byte"
    lines = header.split(b"\n")
    key, _, value = lines[0].partition(b" ")
    if key != b"tree" or not _is_hex(value):
        return "it does not start with its tree"
    i = 1
    while i < len(lines) and lines[i].startswith(b"parent "):
        if not _is_hex(lines[i][7:]):
            return "a parent is not an object id"
        i += 1
    for name in (b"author", b"committer"):
        if i >= len(lines) or not lines[i].startswith(name + b" "):
            return f"its {name.decode()} is missing or out of place"
        if not _IDENT.fullmatch(lines[i][len(name) + 1:]):
            return f"its {name.decode()} line is not 'Name <email> time zone'"
        i += 1
    for line in lines[i:]:
        if line.partition(b" ")[0] in (b"tree", b"parent", b"author", b"committer"):
            return f"it has a second or misplaced {line.partition(b' ')[0].decode()} line"
        if line.startswith(b"encoding ") and not _ONE_READING.fullmatch(line[9:]):
            return (f"its encoding {_show(line[9:60])} is one git re-encodes the whole commit "
                    "from, so its header may read two ways (UTF-8 and ASCII-compatible "
                    "8-bit encodings only)")
    return None


def _is_hex(value: bytes) -> bool:
    return len(value) in (40, 64) and re.fullmatch(rb"[0-9a-f]+", value) is not None


def _show(name: bytes) -> str:
    text = name.decode("utf-8", "backslashreplace")
    return repr(text) if not text.isprintable() or " " in text else text
