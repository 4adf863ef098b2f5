"""An agent's timeline: which version (tree) was in which environment, and when.

Rows are the trees the environments held, the newest first (by when each first arrived
anywhere); columns are the environments; a cell lists each time the row's tree arrived
in that environment (when, by whom, how: a rollback says so) and, when a rollback took it
out again, that it was rolled back. Built from the versions ``history`` lists (the
newest ``--history N`` of each environment), so it says no more than they do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stageline.layout import ENVIRONMENTS


def timeline(versions: Mapping[str, Sequence[dict[str, Any]]],
             position: Mapping[str, int]) -> list[dict[str, Any]]:
    """The rows of the timeline. ``versions`` holds each environment's versions (as
    ``Version.to_json``), newest first; ``position`` each commit's place on the branch's
    first-parent chain (0 the tip), which orders events across environments."""
    rows: dict[str | None, dict[str, Any]] = {}
    for env in ENVIRONMENTS:
        listed = versions.get(env, ())
        for i, version in enumerate(listed):
            newer = listed[i - 1] if i else None
            row = rows.setdefault(version["tree"], {
                "tree": version["tree"], "first": -1,
                "cells": {e: [] for e in ENVIRONMENTS}})
            here = position.get(version["commit"], 0)
            row["first"] = max(row["first"], here)  # the oldest: the largest place
            row["cells"][env].append({
                "time": version["time"], "actor": version["actor"],
                "action": version["action"], "commit": version["commit"][:12],
                "now": i == 0 and version["tree"] is not None,
                "rolled_back": None if newer is None or newer["action"] != "rollback"
                else {"time": newer["time"], "actor": newer["actor"]},
            })
    for row in rows.values():
        for cell in row["cells"].values():
            cell.reverse()  # the oldest arrival first, as a cell reads down in time
    # The newest tree first; removals (no tree) last; the tree id breaks ties.
    ordered = sorted(rows.values(), key=lambda r: (r["tree"] is None, r["first"],
                                                   r["tree"] or ""))
    for row in ordered:
        del row["first"]
    return ordered
