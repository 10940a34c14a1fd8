"""Tests of what a short TTL leaves before it runs out, on a machine that may be loaded.

Such a test races the clock: with three suites on two cores, a 300 ms TTL can run out
between two lines of a test. Each attempt says whether it was in time to mean anything;
one that was not is made again with a TTL four times longer. An attempt in time asserts
as strictly as ever, and the expiry itself is still awaited.
"""

from __future__ import annotations

import time

SHORT_TTLS = (0.3, 1.2, 4.8)
"""Seconds: the TTL of each attempt."""


class Window:
    """The time since a mark, against the share of a TTL a step may take."""

    def __init__(self, ttl: float, share: float = 0.8) -> None:
        self.limit = share * ttl
        self.mark = time.monotonic()

    def restart(self, at: float) -> None:
        """Measure from ``at`` (a ``time.monotonic()`` reading) on."""
        self.mark = at

    def elapsed(self) -> float:
        return time.monotonic() - self.mark

    def in_time(self) -> bool:
        """Whether no more than the allowed share of the TTL has passed since the mark."""
        return self.elapsed() < self.limit
