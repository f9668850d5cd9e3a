"""Tests for bot.relay.outcomes: how a taken outcome is kept in the inbox and read back for a replay."""

from __future__ import annotations

from typing import Any

import pytest

from bot.relay.outcomes import Accepted, Held, Taken, record, restore

KEPT: list[tuple[Taken, dict[str, Any]]] = [
    (Accepted("session-7", "joining"), {"id": "session-7", "status": "joining"}),
    (Accepted("session-7", "left"), {"id": "session-7", "status": "left"}),
    (Accepted("d-1", "queued", "in_call"), {"id": "d-1", "status": "queued", "state": "in_call"}),
    (Held("d-2", "lobby"), {"id": "d-2", "status": "held", "state": "lobby"}),
    (Accepted(None, "forgotten"), {"status": "forgotten"}),
]


@pytest.mark.parametrize(("outcome", "row"), KEPT)
def test_a_taken_outcome_is_kept_as_the_inbox_always_kept_its_answer(outcome: Taken, row: dict[str, Any]) -> None:
    assert record(outcome) == row


@pytest.mark.parametrize(("outcome", "row"), KEPT)
def test_a_kept_row_reads_back_as_the_outcome_it_records(outcome: Taken, row: dict[str, Any]) -> None:
    assert restore(row) == outcome
    assert record(restore(row)) == row


def test_a_note_the_sms_wing_kept_reads_as_accepted_with_its_word() -> None:
    assert restore({"handled": "stop"}) == Accepted(None, "stop")
