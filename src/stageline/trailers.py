"""The ``Stageline-*`` trailers of an action's commit: their names, how they are written,
and how they are read back. Trailers are claims the hook checks against what a commit
does, never credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ACTION = "Stageline-Action"
AGENT = "Stageline-Agent"
ACTOR = "Stageline-Actor"
RESTORES = "Stageline-Restores"
OVERRIDE = "Stageline-Override"  # an org-admin's reason to push through a window

_KEY_RE = re.compile(r"[A-Za-z0-9-]+")


def block(action: str, agent: str | None, actor: str,
          extra: Mapping[str, str] | None = None) -> str:
    """The trailer lines of an action's commit, in the order stageline writes them."""
    lines = {ACTION: action, **({AGENT: agent} if agent else {}), ACTOR: actor, **(extra or {})}
    return "\n".join(f"{key}: {value}" for key, value in lines.items())


def read(lines: str) -> dict[str, str]:
    """The trailers git found in a commit message, from ``%(trailers:only,unfold)``: one
    ``Key: value`` per line. git decides what a trailer is (the last paragraph, blank
    lines that hold only spaces, its separators): what the hook judges is what ``git log``
    and ``git interpret-trailers`` show. Keys compare as git compares them, without case;
    a key given twice keeps both values joined by a line feed, so that a duplicate claim
    cannot hide behind another."""
    found: dict[str, str] = {}
    for line in lines.split("\n"):
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            continue
        key = _CANONICAL.get(key.lower(), key)
        value = value.strip()
        found[key] = f"{found[key]}\n{value}" if key in found else value
    return found


_CANONICAL = {name.lower(): name for name in (ACTION, AGENT, ACTOR, RESTORES, OVERRIDE)}
