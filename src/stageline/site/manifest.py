"""Incremental rebuilds: which agent pages can be taken over from the previous site.

As coverage.py's HTML report does, the site keeps a manifest in its output directory
(the ``.stageline-site`` file that also marks the directory as a site stageline wrote):
for each agent page, the key of everything the page is rendered from (the values its
template is given, and a fingerprint of the code and templates that render them) and the
SHA-256 of the bytes written. The next build renders a page only when its key changed;
otherwise it takes the previous page's bytes, after checking them against the recorded
hash, into the new temporary directory, which then replaces the site whole, as a full
build does. So an incremental build writes the same bytes as a full one
(``tests/test_site.py::test_an_incremental_build_is_the_full_build``), and a page edited
by hand in the output directory is rendered again rather than kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from functools import cache
from pathlib import Path
from typing import Any

MARKER = ".stageline-site"  # in an output directory: a site stageline wrote, safe to replace
FORMAT = 1
NOTE = "a site written by 'stageline site'; it is replaced whole by the next"

Entry = tuple[str, str]  # (key of the page's inputs, SHA-256 of its bytes)


@cache
def fingerprint() -> str:
    """The code that renders a page: every module and template of stageline, and the
    versions of Jinja2, MarkupSafe and Python (an escaping rule may change with them) and
    of git (its diff of large files). A change to any of them renders every page again."""
    from importlib.metadata import version

    from stageline.git.process import version as git_version

    digest = hashlib.sha256()
    digest.update(f"{version('jinja2')} {version('markupsafe')} "
                  f"{sys.version_info[:2]} {git_version()}\n".encode())
    package = Path(__file__).resolve().parent.parent
    for path in sorted(p for p in package.rglob("*")
                       if p.suffix in (".py", ".html") and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(package).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def key(values: dict[str, Any]) -> str:
    """The key of a page rendered from ``values`` (JSON data) by this code."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{fingerprint()}\n{text}".encode()).hexdigest()


MAX_MANIFEST = 64 * 1024 * 1024  # bytes: 10,000 agents take about 2 MB
MAX_PAGE = 64 * 1024 * 1024


def read(out: Path) -> dict[str, Entry]:
    """The previous site's manifest; nothing (every page rendered) when there is none or
    it cannot be read."""
    raw = regular_file(out / MARKER, MAX_MANIFEST)
    try:
        data = json.loads(raw.decode("utf-8")) if raw is not None else {}
        pages = data["pages"] if data.get("format") == FORMAT else {}
    except (ValueError, AttributeError, KeyError, TypeError):
        return {}
    if not isinstance(pages, dict):
        return {}
    return {path: (entry[0], entry[1]) for path, entry in pages.items()
            if isinstance(path, str) and isinstance(entry, list) and len(entry) == 2
            and all(isinstance(part, str) for part in entry)}


def text(pages: dict[str, Entry]) -> bytes:
    """The manifest as written: the same bytes for the same pages."""
    data = {"format": FORMAT, "note": NOTE,
            "pages": {path: list(entry) for path, entry in sorted(pages.items())}}
    return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def previous_page(out: Path, path: str, entry: Entry | None, wanted: str) -> bytes | None:
    """The previous site's page at ``path`` when it was rendered from the same inputs
    (``wanted`` is the key) and its bytes are the ones recorded; else None."""
    if entry is None or entry[0] != wanted:
        return None
    # The page itself, inside the site: no symbolic link is followed out of it.
    if any((out / part).is_symlink() for part in _parents(path)):
        return None
    data = regular_file(out / path, MAX_PAGE)
    return data if data is not None and digest(data) == entry[1] else None


def regular_file(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path`` when it is a regular file (not a link, a FIFO or a device) of
    at most ``limit`` bytes; else None. Opened without blocking: a FIFO in a previous
    site's place must not stop the build."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        try:
            data = fh.read(limit + 1)
        except OSError:
            return None
    return data if len(data) <= limit else None


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
