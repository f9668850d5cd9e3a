"""How the browser connector reads its page's reports and keeps a leg's state (bot/calls/browser/legs.py)."""

from __future__ import annotations

import pytest

from bot.calls.browser.legs import Leg, join_failure, read_report
from bot.calls.states import Outcome, Verdict
from bot.errors import PermanentError, StaleTokenError, TransientError
from bot.models import CallState


@pytest.mark.parametrize(
    ("body", "state", "verdict"),
    [
        ({"kind": "state", "state": "InLobby"}, CallState.LOBBY, None),
        ({"kind": "state", "state": "RemoteHold"}, CallState.CONNECTED, None),
        ({"kind": "state", "state": "Connecting"}, None, None),
        ({"kind": "state", "state": "Disconnecting"}, None, None),
        ({"kind": "ended", "code": 0, "subCode": 5300}, None, Verdict.REMOVED),
        ({"kind": "ended", "code": 490, "subCode": 4525}, None, Verdict.DROPPED),
        ({"kind": "lost", "reason": "invalidToken"}, None, Verdict.NEW_TOKEN),
        ({"kind": "lost"}, None, Verdict.DROPPED),
        ({"kind": "error", "code": 403, "subCode": 0, "message": "no"}, None, Verdict.FAILED),
        ({"kind": "something new"}, None, None),
    ],
)
def test_a_report_reads_as_a_live_state_or_an_end(body: dict[str, object], state: object, verdict: object) -> None:
    reading = read_report(body)
    assert reading.state == state
    assert (reading.end.verdict if reading.end else None) == verdict


def test_a_report_carries_the_meetings_thread_when_it_names_one() -> None:
    thread = "19:meeting_abc@thread.v2"
    assert read_report({"kind": "state", "state": "Connected", "threadId": thread}).thread_id == thread
    assert read_report({"kind": "state", "state": "Connected", "threadId": ""}).thread_id is None


def test_a_leg_only_moves_forward_and_ends_once() -> None:
    leg = Leg("leg", "token")
    assert leg.advance(CallState.LOBBY) and leg.advance(CallState.CONNECTED)
    assert not leg.advance(CallState.LOBBY)  # a late lobby report after admission
    assert not leg.advance(CallState.CONNECTED)
    assert leg.end(Outcome(Verdict.DROPPED, "lost"))
    assert not leg.end(Outcome(Verdict.LEFT))
    assert not leg.advance(CallState.CONNECTED)
    assert (leg.state, leg.reason) == (CallState.DROPPED, "lost")


def test_a_refused_token_ends_the_leg_with_an_error_to_raise() -> None:
    leg = Leg("leg", "token")
    leg.end(Outcome(Verdict.NEW_TOKEN, "refused"))
    assert leg.state == CallState.DROPPED and isinstance(leg.error, StaleTokenError)
    assert join_failure(leg) is leg.error


@pytest.mark.parametrize(
    ("verdict", "error"),
    [
        (Verdict.DROPPED, TransientError),
        (Verdict.LEFT, TransientError),
        (Verdict.FAILED, PermanentError),
        (Verdict.ENDED, PermanentError),
        (Verdict.REMOVED, PermanentError),
    ],
)
def test_a_join_that_ended_on_its_way_fails_as_its_end_says(verdict: Verdict, error: type[Exception]) -> None:
    leg = Leg("leg", "token")
    leg.end(Outcome(verdict, "why"))
    failure = join_failure(leg)
    assert type(failure) is error
