"""One test case for every projection: the view rebuilt from the log is the live view.

A view's test module subclasses :class:`RebuildCase` and provides one fixture, ``view``:
a :class:`ViewUnderTest` that writes through the view's adapter (a saver, a store) and
reads the view both ways. The case then checks rebuild == live after plain writes, as
writes go on, after the adapter reclaims log entries (prune, compaction), and that a
rebuild in place repairs a damaged view. The module deletes the imported base at the
end, so it is not collected twice.

(The node cache is not event-sourced: its entries are the data, with no log to rebuild
them from, so it has no such test.)
"""

from __future__ import annotations

from typing import Any, Protocol

import pytest


class ViewUnderTest(Protocol):
    def write(self, round: int) -> None:
        """A round of writes through the adapter: new data, overwrites and deletes."""

    def live(self) -> Any:
        """The view as the live appends left it, in a comparable form (never empty)."""

    def rebuilt(self) -> Any:
        """The view rebuilt from the log beside the live one, in the same form."""

    def reclaim(self) -> None:
        """Let the adapter drop what its log no longer needs (prune, compact)."""

    def damage(self) -> None:
        """Lose part of the live view, as an eviction would (the log is intact)."""

    def repair(self) -> None:
        """Rebuild the live view in place from the log."""


class RebuildCase:
    @pytest.fixture
    def view(self) -> ViewUnderTest:
        raise NotImplementedError("a view's test module provides the view under test")

    def test_rebuild_gives_the_live_view(self, view: ViewUnderTest) -> None:
        view.write(0)
        live = view.live()
        assert live
        assert view.rebuilt() == live

    def test_rebuild_gives_the_live_view_as_writes_go_on(self, view: ViewUnderTest) -> None:
        for round in range(3):
            view.write(round)
            assert view.rebuilt() == view.live()

    def test_rebuild_gives_the_live_view_after_reclaiming(self, view: ViewUnderTest) -> None:
        view.write(0)
        view.write(1)
        before = view.live()
        view.reclaim()
        live = view.live()
        assert live
        assert view.rebuilt() == live
        assert before  # reclaiming may change the view; rebuilding must follow it

    def test_rebuild_in_place_repairs_a_damaged_view(self, view: ViewUnderTest) -> None:
        view.write(0)
        live = view.live()
        view.damage()
        assert view.live() != live
        view.repair()
        assert view.live() == live
