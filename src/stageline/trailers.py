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

_KEY_RE = re.compile(r"[A-Za-z0-9-]+")


def block(action: str, agent: str | None, actor: str,
          extra: Mapping[str, str] | None = None) -> str:
    """The trailer lines of an action's commit, in the order stageline writes them."""
    lines = {ACTION: action, **({AGENT: agent} if agent else {}), ACTOR: actor, **(extra or {})}
    return "\n".join(f"{key}: {value}" for key, value in lines.items())


def parse(message: str) -> dict[str, str]:
    """The ``Key: value`` trailers of the last paragraph of a commit message.

    Only ``Stageline-*`` keys matter to us; a key given twice keeps both values
    joined by a newline so that a duplicate claim cannot hide behind another.
    """
    if ":" not in message:
        return {}
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    found: dict[str, str] = {}
    for line in paragraphs[-1].split("\n"):
        key, sep, value = line.partition(":")
        if not sep or not _KEY_RE.fullmatch(key):
            continue
        value = value.strip()
        found[key] = f"{found[key]}\n{value}" if key in found else value
    return found
