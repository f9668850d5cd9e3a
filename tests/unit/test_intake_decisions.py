"""Tests for the intake's pure decisions: who may join or write to a meeting, where a message goes, how long a
busy meeting asks its senders to wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.address import Address
from bot.models import DeliveryState, ExternalUser, IdentityMode, Meeting, Session, SessionState
from bot.relay.intake import SEND_INTERVAL_S, admission, busy, refusal
from bot.relay.outcomes import Blocked, Busy, NotAllowed, NotInCall, Paused, UnknownMeeting
from bot.store.outbox import BacklogFull

ANN = Address.webhook("app", "ann")
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def meeting(allow: list[str] | None = None, paused: bool = False) -> Meeting:
    return Meeting(
        id="m-1",
        code="424242",
        name="Weekly sync",
        link=None,
        thread_id=None,
        join_meeting_id=None,
        passcode=None,
        organizer_id=None,
        identity_mode=IdentityMode.PER_USER,
        display_name_template="{name} ({channel})",
        allow=["webhook:app/*"] if allow is None else allow,
        paused=paused,
    )


def user(blocked: bool = False) -> ExternalUser:
    return ExternalUser(str(ANN), ANN.channel, "Ann", blocked=blocked)


def session(state: SessionState) -> Session:
    return Session(id=7, user_id=str(ANN), meeting_id="m-1", state=state)


def test_a_sender_the_meeting_lets_in_is_not_refused() -> None:
    assert refusal(meeting(), "424242", user(), ANN) is None
    assert refusal(meeting(), "424242", None, ANN) is None  # not stored yet: nothing says they are blocked


def test_refusals_come_in_order_unknown_meeting_paused_blocked_not_allowed() -> None:
    assert refusal(None, "999", user(blocked=True), ANN) == UnknownMeeting("999")
    assert refusal(meeting(allow=[], paused=True), "424242", user(blocked=True), ANN) == Paused()
    assert refusal(meeting(allow=[]), "424242", user(blocked=True), ANN) == Blocked()
    assert refusal(meeting(allow=[]), "424242", user(), ANN) == NotAllowed()


def test_the_allow_list_matches_the_whole_address() -> None:
    assert refusal(meeting(allow=["webhook:app/ann"]), "424242", None, ANN) is None
    assert refusal(meeting(allow=["webhook:crm/*"]), "424242", None, ANN) == NotAllowed()
    assert refusal(meeting(allow=["*"]), "424242", None, Address.sms("+15550100")) is None


@pytest.mark.parametrize(
    ("state", "hold", "expected"),
    [
        (SessionState.IN_CALL, True, DeliveryState.PENDING),
        (SessionState.IN_CALL, False, DeliveryState.PENDING),
        (SessionState.LOBBY, True, DeliveryState.HELD),
        (SessionState.JOINING, True, DeliveryState.HELD),
        (SessionState.REQUESTED, True, DeliveryState.HELD),
        (SessionState.LOBBY, False, NotInCall("lobby")),
        (SessionState.LEFT, True, NotInCall("left")),
    ],
)
def test_admission_sends_holds_or_refuses_by_the_session_state(
    state: SessionState, hold: bool, expected: DeliveryState | NotInCall
) -> None:
    assert admission(session(state), hold) == expected


def test_a_message_without_a_session_is_not_in_call_with_state_none() -> None:
    assert admission(None, True) == NotInCall("none")


def test_busy_asks_for_at_least_one_send_interval() -> None:
    assert busy(BacklogFull("meeting", 150, None), NOW) == Busy(max(1, int(SEND_INTERVAL_S + 0.999)), "meeting", 150)


def test_busy_waits_for_a_head_that_waits_for_its_retry() -> None:
    full = BacklogFull("user", 50, NOW + timedelta(seconds=41.2))
    assert busy(full, NOW) == Busy(42, "user", 50)
