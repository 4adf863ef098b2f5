"""One progress line on stderr for long operations, shown only on a terminal.

    with Progress() as progress:
        for name in progress.track(names, "exporting agents"):
            ...

or, for work in phases, ``progress.phase(label, total)`` then ``progress.advance()``.
Nothing is written when stderr is not a terminal (pipes, CI logs, files), so
output meant for machines never holds it; the line is erased when the work ends.
Progress has no colour, so ``NO_COLOR`` does not concern it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TextIO, TypeVar

T = TypeVar("T")

# Redraws at most this often: a counter advanced once per commit must stay cheap.
_INTERVAL = 0.1


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class Progress:
    """``label count/total`` on one stderr line, redrawn in place (``\\r``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream)
        self.label = ""
        self.total: int | None = None
        self.count = 0
        self._width = 0  # of the line on screen, to blank it out without escape codes
        self._drawn_at = 0.0

    def phase(self, label: str, total: int | None = None) -> None:
        """Start a new step: its label, and how many items it has (None: unknown)."""
        self.label, self.total, self.count = label, total, 0
        self._draw()

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.enabled and (self.count == self.total
                             or time.monotonic() - self._drawn_at >= _INTERVAL):
            self._draw()

    def track(self, items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """Yield ``items``, counting them as a phase."""
        if total is None and isinstance(items, Sized):
            total = len(items)
        self.phase(label, total)
        for item in items:
            yield item
            self.advance()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _draw(self) -> None:
        if not self.enabled:
            return
        if self.total is None:
            text = f"{self.label}…" if not self.count else f"{self.label}: {self.count:,}"
        else:
            text = f"{self.label}: {self.count:,}/{self.total:,}"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)
        self._drawn_at = time.monotonic()
