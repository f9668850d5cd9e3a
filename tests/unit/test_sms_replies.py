"""Tests for the SMS wing's translation of intake outcomes into what a phone is told (bot.channels.sms.replies)."""

from __future__ import annotations

import pytest

from bot.channels.sms.replies import Reply, chat_reply, join_reply
from bot.models import Session, SessionState
from bot.relay.outcomes import (
    Accepted,
    Blocked,
    Busy,
    Held,
    NotAllowed,
    NotInCall,
    Outcome,
    Paused,
    UnknownMeeting,
)

CURRENT = Session(id=7, user_id="sms:+15550100", meeting_id="m-1", state=SessionState.IN_CALL)


@pytest.mark.parametrize(
    ("outcome", "reply"),
    [
        (Accepted("session-8", "joining"), Reply()),
        (UnknownMeeting("999"), Reply("unknown_meeting", "join refused")),
        (Paused(), Reply("not_allowed", "join refused")),
        (Blocked(), Reply("not_allowed", "join refused")),
        (NotAllowed(), Reply("not_allowed", "join refused")),
        (NotInCall("none"), Reply(None, "join refused")),
    ],
)
def test_join_outcomes(outcome: Outcome, reply: Reply) -> None:
    assert join_reply(outcome, None) == reply
    assert join_reply(outcome, CURRENT) == reply  # joining another meeting: its session changes will tell


def test_joining_the_meeting_a_phone_is_in_tells_it_where_it_stands() -> None:
    assert join_reply(Accepted("session-7", "in_call"), CURRENT) == Reply("status")


@pytest.mark.parametrize(
    ("outcome", "reply"),
    [
        (Accepted("d-1", "queued", "in_call"), Reply()),
        (Held("d-1", "lobby"), Reply()),
        (Busy(3, "meeting", 150), Reply(None, "busy", busy=True)),
        (Busy(3, "user", 50), Reply(None, "busy", busy=True)),
        (NotInCall("left"), Reply("no_session", "not in call")),
        (Paused(), Reply("no_session", "not in call")),
        (NotAllowed(), Reply("no_session", "not in call")),
        (UnknownMeeting("m-1"), Reply("no_session", "not in call")),
    ],
)
def test_chat_outcomes(outcome: Outcome, reply: Reply) -> None:
    assert chat_reply(outcome) == reply
