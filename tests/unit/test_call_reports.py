"""Tests for what one report of an app that holds its own call leg does to that leg (bot.calls.client_reported)."""

from __future__ import annotations

import pytest

from bot.calls.client_reported import Judgement, judge
from bot.channels.webhook import REPORTED_STATES
from bot.models import CallState, ReportVerdict

S = CallState
V = ReportVerdict


def test_every_reported_state_is_a_call_state_and_none_is_the_connectors_own() -> None:
    assert [CallState(s) for s in REPORTED_STATES] == [S.LOBBY, S.CONNECTED, S.LEFT, S.REMOVED, S.ENDED]
    # Dropped and failed are the bridge's verdicts on a leg it holds; an app that lost its call joins again.
    assert {"dropped", "failed"}.isdisjoint(REPORTED_STATES)


@pytest.mark.parametrize(
    ("current", "state", "verdict"),
    [
        (S.LOBBY, S.LOBBY, V.SAME),
        (S.LOBBY, S.CONNECTED, V.TAKEN),
        (S.CONNECTED, S.CONNECTED, V.SAME),
        (S.CONNECTED, S.LOBBY, V.IGNORED),  # within one call, a state older than the current one arrived late
        (S.LOBBY, S.REMOVED, V.TAKEN),
        (S.CONNECTED, S.LEFT, V.TAKEN),
        (S.CONNECTED, S.ENDED, V.TAKEN),
        (S.REMOVED, S.ENDED, V.IGNORED),  # a final state stays final
        (S.REMOVED, S.REMOVED, V.IGNORED),
        (S.ENDED, S.CONNECTED, V.IGNORED),
        (S.LEFT, S.LOBBY, V.IGNORED),
        (None, S.CONNECTED, V.TAKEN),  # taken up after a restart: whatever the app says first is where it stands
        (None, S.LOBBY, V.TAKEN),
        (None, S.ENDED, V.TAKEN),
    ],
)
def test_one_call_moves_only_forward_and_ends_once(current: CallState | None, state: CallState, verdict: V) -> None:
    assert judge(current, None, (), state, None) == Judgement(verdict)
    # Naming the same call of the app every time changes nothing of that.
    assert judge(current, "sdk-1", (), state, "sdk-1") == Judgement(verdict)


@pytest.mark.parametrize(
    ("current", "state", "expected"),
    [
        (S.CONNECTED, S.LOBBY, Judgement(V.TAKEN, new_call=True)),  # the app joined again: lobby first, anew
        (S.CONNECTED, S.CONNECTED, Judgement(V.SAME, new_call=True)),
        (S.LOBBY, S.REMOVED, Judgement(V.TAKEN, new_call=True)),
        (S.REMOVED, S.LOBBY, Judgement(V.IGNORED)),  # a new call cannot reopen an ended leg
    ],
)
def test_a_new_call_of_the_app_starts_afresh(current: CallState, state: CallState, expected: Judgement) -> None:
    assert judge(current, "sdk-1", (), state, "sdk-2") == expected


def test_a_call_the_app_replaced_is_never_heard_again() -> None:
    for state in (S.LOBBY, S.CONNECTED, S.LEFT, S.REMOVED, S.ENDED):
        assert judge(S.CONNECTED, "sdk-2", ("sdk-1",), state, "sdk-1") == Judgement(V.IGNORED)


def test_a_report_naming_no_call_is_about_the_legs_current_one() -> None:
    assert judge(S.CONNECTED, "sdk-2", ("sdk-1",), S.LEFT, None) == Judgement(V.TAKEN)
    assert judge(S.LOBBY, None, (), S.CONNECTED, "sdk-1") == Judgement(V.TAKEN)  # the first to name one binds it
