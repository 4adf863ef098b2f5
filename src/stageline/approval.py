"""The Ready-for-Production record, ``approvals/<agent>.yaml``: its format, how it is
written, and when it makes a staging tree ready (spec §2 and §9).

A record names one staging tree and every QA mark of that tree, oldest first::

    agent: support-bot
    staging_tree: <tree id>
    marked_by: rita                  # the latest mark
    marked_at: 2026-11-29T10:00:00Z
    approvals:
      - {by: quinn, at: 2026-11-28T14:00:00Z}
      - {by: rita, at: 2026-11-29T10:00:00Z}
    tests: {passed: 3, failed: 0}

A record without ``approvals:`` (every record before N approvals) is the one mark of
``marked_by``. A QA member counts once. A staging tree other than the record's starts a
new record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from stageline import yamlsafe
from stageline.layout import is_agent_name
from stageline.policy import MEMBER_ID_RE

_HEX_RE = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Mark:
    by: str
    at: str


@dataclass(frozen=True)
class Approval:
    agent: str
    staging_tree: str
    marks: tuple[Mark, ...]  # oldest first; never empty
    tests_passed: int | None = None

    @property
    def marked_by(self) -> str:
        return self.marks[-1].by

    @property
    def marked_at(self) -> str:
        return self.marks[-1].at

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(mark.by for mark in self.marks)


def parse(data: bytes, source: str) -> Approval | str:
    """A record, or one sentence saying why it is not one.

    Every field has the shape ``stageline mark-ready`` writes: an agent name, a
    hexadecimal tree id, member ids, timestamps (text, or YAML timestamps written
    unquoted) and ``tests: {passed: N, ...}``; anything else is refused here, so that no
    other value (a line break in a name, a 5,000-digit number) reaches a message."""
    try:
        doc = yamlsafe.load(data, source)
    except yamlsafe.YamlError as exc:
        return str(exc)
    if not isinstance(doc, dict):
        return f"{source} must be a mapping"
    fields = {}
    for key, valid, what in (("agent", is_agent_name, "an agent name"),
                             ("staging_tree", _HEX_RE.fullmatch, "a tree id"),
                             ("marked_by", MEMBER_ID_RE.fullmatch, "a member id")):
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            return f"{source} has no {key}"
        if not valid(value):
            return f"{source}: {key} {yamlsafe.show(value)} is not {what}"
        fields[key] = value
    marked_at = _time(doc.get("marked_at", ""))
    if marked_at is None:
        return f"{source}: marked_at {yamlsafe.show(doc.get('marked_at'))} is not a date and time"
    marks = _marks(doc.get("approvals"), source)
    if isinstance(marks, str):
        return marks
    if not marks:
        marks = (Mark(fields["marked_by"], marked_at),)
    elif marks[-1] != Mark(fields["marked_by"], marked_at):
        return f"{source}: marked_by and marked_at must be the last of its approvals"
    tests = {} if doc.get("tests") is None else doc["tests"]
    passed = tests.get("passed") if isinstance(tests, dict) else None
    if not isinstance(tests, dict) or not (passed is None or (
            isinstance(passed, int) and not isinstance(passed, bool) and passed >= 0)):
        return f"{source}: tests must be {{passed: N, failed: N}} with whole numbers"
    return Approval(fields["agent"], fields["staging_tree"], marks, passed)


def _time(value: Any) -> str | None:
    if isinstance(value, date):  # datetime too: ``marked_at: 2026-11-28T14:00:00Z``
        return value.isoformat()
    return value if isinstance(value, str) else None


def _marks(raw: Any, source: str) -> tuple[Mark, ...] | str:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        return f"{source}: approvals must be a list of {{by: MEMBER, at: TIME}}"
    marks = []
    for item in raw:
        by = item.get("by") if isinstance(item, dict) else None
        at = _time(item.get("at", "")) if isinstance(item, dict) else None
        if not isinstance(item, dict) or set(item) != {"by", "at"} or not isinstance(by, str) \
                or not MEMBER_ID_RE.fullmatch(by) or at is None:
            return f"{source}: approvals must be a list of {{by: MEMBER, at: TIME}}"
        marks.append(Mark(by, at))
    if len({m.by for m in marks}) != len(marks):
        return f"{source}: a QA member is listed twice in approvals"
    return tuple(marks)


def text(agent: str, staging_tree: str, marks: tuple[Mark, ...], passed: int = 0) -> str:
    """The record as ``mark-ready`` writes it. Values are quoted: ids such as 2024, yes or
    null must stay text when read back."""
    q = json.dumps
    last = marks[-1]
    listed = "".join(f"  - {{by: {q(m.by)}, at: {q(m.at)}}}\n" for m in marks)
    return (f"agent: {q(agent)}\nstaging_tree: {q(staging_tree)}\nmarked_by: {q(last.by)}\n"
            f"marked_at: {q(last.at)}\napprovals:\n{listed}"
            f"tests: {{passed: {passed}, failed: 0}}\n")


def problem(record: Approval | str | None, agent: str, staging_tree: str | None) -> str | None:
    """Why ``record`` is not a record of ``agent``'s current staging tree, or None."""
    if record is None:
        return f"{agent} has not been marked Ready for Production"
    if isinstance(record, str):
        return record
    if record.agent != agent:
        return f"the approval of {agent} names another agent ({record.agent})"
    if staging_tree is None:
        return f"{agent} is not in staging"
    if record.staging_tree != staging_tree:
        return (f"the approval of {agent} is for an older staging tree "
                f"({record.staging_tree[:12]}), not the current {staging_tree[:12]}")
    return None


def shortfall(record: Approval, required: int, counts: Any) -> str | None:
    """Why the marks do not make the tree ready: fewer than ``required`` marks by members
    ``counts`` accepts (those holding qa in the judging policy), or None."""
    valid = [m for m in record.markers if counts(m)]
    if len(valid) >= required:
        return None
    named = f" ({', '.join(valid)})" if valid else ""
    ignored = [m for m in record.markers if not counts(m)]
    why = f"; {', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not hold qa now" \
        if ignored else ""
    return f"approvals {len(valid)} of {required}{named}{why}"
