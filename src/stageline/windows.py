"""Release and freeze windows (spec §9): when a push to an environment may happen.

A window is a named five-field cron expression read in an IANA time zone, a duration
and a kind, ``allow`` or ``deny``. It is open from each time its cron matches, for its
duration of elapsed time: one that opened yesterday and is still running counts. For a
target that lists windows: with none listed, pushes are allowed at any time; when an
``allow`` window is listed, only while one is open; an open ``deny`` window always wins.
Pure: the time is an argument, never read here (the hook passes the server's clock).

Daylight saving: the cron fields match the wall clock of the window's zone. A wall time
that a jump forward skips is read with the offset before the jump (Python's reading,
PEP 495): a window set for 02:30 on the night clocks go from 02:00 to 03:00 opens at
03:30. A wall time that a jump back repeats opens the window at its first occurrence.
Durations are elapsed time: ``8h`` is eight hours, however the clock changed meanwhile.

The cron parser is ours rather than a library's: the five fields with lists, ranges,
steps and names are a few dozen lines, the hook imports nothing more on every push, and
croniter, the usual choice, was declared unmaintained in 2025 before it moved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))
_NAMES = {3: ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
              "dec"),
          4: ("sun", "mon", "tue", "wed", "thu", "fri", "sat")}
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_UNIT = {"m": 1, "h": 60, "d": 1440}
MAX_DURATION = 366 * 1440  # minutes


class WindowError(ValueError):
    """A window that cannot be read; the message says what is wrong."""


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]  # each field's values, descending
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day of month begins with "*"
    any_weekday: bool  # the day of week begins with "*"

    def day_matches(self, day: datetime) -> bool:
        """As cron reads the two day fields: when both are restricted, either may match."""
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday


@dataclass(frozen=True)
class Window:
    name: str
    kind: str  # allow | deny
    cron: Cron
    minutes: int  # how long each run lasts
    zone: str

    def opened(self, now: datetime) -> datetime | None:
        """When the run of this window that holds ``now`` began, or None when none does."""
        zone = ZoneInfo(self.zone)
        earliest = now - timedelta(minutes=self.minutes)
        local = now.astimezone(zone).replace(tzinfo=None)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        last = earliest.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
        while day >= last:
            if self.cron.day_matches(day):
                for hour in self.cron.hours:
                    for minute in self.cron.minutes:
                        start = day.replace(hour=hour, minute=minute).replace(
                            tzinfo=zone, fold=0).astimezone(UTC)
                        if earliest < start <= now:
                            return start
            day -= timedelta(days=1)
        return None

    def closes(self, start: datetime) -> datetime:
        return start + timedelta(minutes=self.minutes)


def parse_cron(text: str) -> Cron:
    parts = text.split() if isinstance(text, str) else []
    if len(parts) != 5:
        raise WindowError(f"cron {text!r} must have five fields (minute hour day month "
                          "weekday)")
    values = [_field(part, i) for i, part in enumerate(parts)]
    cron = Cron(tuple(sorted(values[0], reverse=True)), tuple(sorted(values[1], reverse=True)),
                frozenset(values[2]), frozenset(values[3]),
                frozenset(0 if d == 7 else d for d in values[4]),
                # as Vixie cron and cronie: a day field beginning with "*" ("*/2"
                # included) leaves the days to the other field
                parts[2].startswith("*"), parts[4].startswith("*"))
    if cron.any_weekday and not any(d <= _LONGEST[m] for m in cron.months for d in cron.days):
        raise WindowError(f"cron {text!r} never runs (no month has that day)")
    return cron


_LONGEST = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30,
            12: 31}


def _field(text: str, index: int) -> set[int]:
    name, low, high = FIELDS[index]
    found: set[int] = set()
    for item in text.split(","):
        body, slash, step_text = item.partition("/")
        step = _number(step_text, index, 1, high) if slash else 1
        if body == "*":
            first, last = low, high
        elif "-" in body:
            start, _, end = body.partition("-")
            first, last = _value(start, index), _value(end, index)
        else:
            first = _value(body, index)
            last = high if slash else first
        if first > last:
            raise WindowError(f"the {name} range {item!r} runs backwards")
        found.update(range(first, last + 1, step))
    return found


def _value(text: str, index: int) -> int:
    names = _NAMES.get(index, ())
    if text.lower() in names:
        return names.index(text.lower()) + (1 if index == 3 else 0)
    _name, low, high = FIELDS[index]
    return _number(text, index, low, high)


def _number(text: str, index: int, low: int, high: int) -> int:
    if not text.isdigit() or not text.isascii() or not low <= int(text) <= high:
        raise WindowError(f"{text!r} is not a {FIELDS[index][0]} ({low} to {high})")
    return int(text)


def parse_duration(text: object) -> int:
    """``90m``, ``8h``, ``14d``: minutes."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) * _UNIT[match.group(2)] > MAX_DURATION:
        raise WindowError(f"duration {text!r} must be minutes, hours or days such as 90m, "
                          "8h or 14d (a year at most)")
    return int(match.group(1)) * _UNIT[match.group(2)]


# Names in the zone database that are not places: the server's own setting ("localtime"),
# a placeholder ("Factory"), and copies of the database under other rules.
_NOT_PLACES = ("localtime", "factory", "posixrules", "posix/", "right/")


@cache
def zone_exists(name: str) -> bool:
    """An IANA time zone: a place, the same on every server."""
    if name.lower().startswith(_NOT_PLACES):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def blocking(windows: list[Window], now: datetime) -> str | None:
    """Why a push to a target with these windows may not happen at ``now`` (one clause:
    "frozen by holiday-freeze until 2027-01-03 00:00 Europe/Berlin"), or None when it may."""
    for window in windows:
        if window.kind == "deny" and (start := window.opened(now)) is not None:
            until = window.closes(start).astimezone(ZoneInfo(window.zone))
            return f"frozen by {window.name} until {until:%Y-%m-%d %H:%M} {window.zone}"
    allows = [w for w in windows if w.kind == "allow"]
    if allows and all(w.opened(now) is None for w in allows):
        return f"outside its release windows ({', '.join(w.name for w in allows)})"
    return None
