"""A process whose audit chain another process shares moves to another chain."""

from __future__ import annotations

import pytest

from app.audit import chain_lock
from app.audit.repository import CHAIN_STRIPES


@pytest.fixture(autouse=True)
def _own_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_lock, "_picked", {})  # this process's real pick stays as it was
    monkeypatch.setattr(chain_lock, "LANES", 1)  # one chain per process, unless a test says


def test_a_process_with_several_lanes_moves_only_the_shared_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chain_lock, "LANES", 8)
    lanes = list(chain_lock.process_chains(64))
    assert len(set(lanes)) == 8
    moved = chain_lock.move_away(64, lanes[3])
    after = chain_lock.process_chains(64)
    assert moved not in lanes
    assert after == [*lanes[:3], moved, *lanes[4:]]


def test_lanes_never_exceed_the_chains_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_lock, "LANES", 8)
    lanes = chain_lock.process_chains(4)
    assert sorted(lanes) == [0, 1, 2, 3]
    assert chain_lock.move_away(4, lanes[0]) == lanes[0]  # every chain is already ours
    assert chain_lock.process_chains(1) == [0]


def test_a_shared_chain_is_left_for_another_and_the_move_sticks() -> None:
    for _ in range(50):
        chain_lock._picked.clear()
        first = chain_lock.process_chain(64)
        moved = chain_lock.move_away(64, first)
        assert moved != first
        assert 0 <= moved < min(64, CHAIN_STRIPES)
        assert chain_lock.process_chain(64) == moved


def test_a_late_report_about_a_chain_already_left_does_not_move_again() -> None:
    first = chain_lock.process_chain(64)
    moved = chain_lock.move_away(64, first)
    # Another request of this process saw the same race on the old chain.
    assert chain_lock.move_away(64, first) == moved
    assert chain_lock.process_chain(64) == moved


def test_one_chain_allowed_has_nowhere_to_go() -> None:
    assert chain_lock.move_away(1, 0) == 0
    assert chain_lock.process_chain(1) == 0


def test_two_chains_allowed_swap() -> None:
    first = chain_lock.process_chain(2)
    assert chain_lock.move_away(2, first) == 1 - first
