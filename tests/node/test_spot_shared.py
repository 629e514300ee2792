"""The Spot watch's shared-folder steps (node/spot_shared.py): one run at a time, waited for a
bounded time once; a run stuck on the hung folder is never waited for again, so every later
poll signals the ranks at once. The steps themselves, on a real node folder: test_node_spot.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cfn_chainermn.node import spot_shared
from cfn_chainermn.node.homefiles import HomeFiles
from cfn_chainermn.node.spot_shared import Shared, Todo, Told

NOTICE = "2026-12-02T21:00:00Z"


def _todo(tmp_path: Path, notice: str = NOTICE) -> Todo:
    return Todo(notice, HomeFiles(tmp_path), "127.0.0.3", "w1 2026-12-02T21:00:00Z\n", "line\n", frozenset())


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[Todo]]:
    """Each run's steps wait until the event is set (the hung folder), then say what they were given."""
    release, runs = threading.Event(), []

    def tell(todo: Todo, told: Told) -> Told:
        runs.append(todo)
        release.wait(timeout=60)  # a liveness bound: every test sets it
        told.gone, told.words = True, ["queue told"]
        return told
    monkeypatch.setattr(spot_shared, "tell", tell)
    return release, runs


def test_a_stuck_run_is_not_waited_for_again(tmp_path: Path, held: tuple[threading.Event, list[Todo]]) -> None:
    """node-agent.md: "the next polls signal at once". Whatever the wait a later poll offers, a
    run already stuck is only looked at: here the second call returns while the folder still
    hangs, and only a timer 30 s on (a liveness bound, should the call wait) releases it."""
    release, runs = held
    shared = Shared()
    timer = threading.Timer(30, release.set)
    try:
        first = shared.run(_todo(tmp_path), 0.05)
        assert isinstance(first, str) and first.startswith("the shared folder has not answered for ")
        timer.start()
        again = shared.run(_todo(tmp_path), 600)
        assert isinstance(again, str) and "has not answered" in again
        assert not release.is_set(), "returned while the folder still hung, not when the timer released it"
    finally:
        release.set()
        timer.cancel()
    assert len(runs) == 1, "no second run while the first is stuck"


def test_a_run_that_ends_before_the_watch_stops_is_handed_over(
        tmp_path: Path, held: tuple[threading.Event, list[Todo]]) -> None:
    """Its outcome, taken in at close, goes to the watch to record (a restarted watch would
    otherwise write the entry again), with the notice it was for."""
    release, _ = held
    shared = Shared()
    assert isinstance(shared.run(_todo(tmp_path), 0.05), str)
    assert shared.close() == "the shared folder still has not answered (starting): left behind"
    release.set()
    threads = [t for t in threading.enumerate() if t.name == "spot-shared-folder"]
    for thread in threads:
        thread.join(timeout=30)
    left = shared.close()
    assert isinstance(left, Told) and left.gone and left.notice == NOTICE
    assert shared.close() == "", "each outcome once"
