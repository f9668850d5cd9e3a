"""Tests for the webhook door's translation of intake outcomes into HTTP answers (bot.channels.webhook)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.channels.webhook import http_answer
from bot.relay.outcomes import (
    Accepted,
    Blocked,
    Busy,
    Held,
    NotAllowed,
    NotInCall,
    NotReported,
    Outcome,
    Paused,
    UnknownMeeting,
)


@pytest.mark.parametrize(
    ("outcome", "kind", "status", "body"),
    [
        (Accepted("session-7", "joining"), "join", 202, {"id": "session-7", "status": "joining"}),
        (Accepted("session-7", "left"), "leave", 202, {"id": "session-7", "status": "left"}),
        (Accepted("d-1", "queued", "in_call"), "message", 202, {"id": "d-1", "status": "queued", "state": "in_call"}),
        (Held("d-2", "lobby"), "message", 202, {"id": "d-2", "status": "held", "state": "lobby"}),
        (Accepted(None, "forgotten"), "forget", 202, {"status": "forgotten"}),
        (
            Accepted("session-7", "reported", "connected"),
            "call",
            202,
            {"id": "session-7", "status": "reported", "state": "connected"},
        ),
        (
            Accepted("session-7", "ignored", "removed"),
            "call",
            202,
            {"id": "session-7", "status": "ignored", "state": "removed"},
        ),
        (
            NotInCall("none"),
            "call",
            409,
            {
                "error": "not_in_call",
                "state": "none",
                "reason": "there is no session in this meeting to report on: join first (a session that ended stays "
                "ended)",
            },
        ),
        (
            NotInCall("joining"),
            "call",
            409,
            {
                "error": "not_in_call",
                "state": "joining",
                "reason": "the bridge is still setting up this session's call: report again in a moment",
            },
        ),
        (
            NotReported("connector"),
            "call",
            409,
            {
                "error": "not_reported",
                "reason": "this bridge holds the call legs itself (calls.connector is not client_reported): it takes "
                "no call reports",
            },
        ),
        (
            NotReported("shared"),
            "call",
            409,
            {
                "error": "not_reported",
                "reason": "this session's call leg speaks for the whole meeting (identity_mode shared): no one app "
                "holds it",
            },
        ),
        (
            UnknownMeeting("999"),
            "join",
            404,
            {"error": "unknown_meeting", "reason": "no meeting with code '999'"},
        ),
        (Paused(), "message", 403, {"error": "paused", "reason": "this meeting is paused by an operator"}),
        (Blocked(), "join", 403, {"error": "blocked", "reason": "this user is blocked"}),
        (NotAllowed(), "join", 403, {"error": "not_allowed", "reason": "this user may not join this meeting"}),
        (
            NotInCall("none"),
            "leave",
            409,
            {"error": "not_in_call", "state": "none", "reason": "there is no session to leave"},
        ),
        (
            NotInCall("none"),
            "message",
            409,
            {"error": "not_in_call", "state": "none", "reason": "join the meeting first"},
        ),
        (
            NotInCall("lobby"),
            "message",
            409,
            {
                "error": "not_in_call",
                "state": "lobby",
                "reason": "messages are relayed only while you are in the meeting call",
            },
        ),
    ],
)
def test_each_outcome_has_its_status_and_body(outcome: Outcome, kind: str, status: int, body: dict[str, Any]) -> None:
    answer = http_answer(outcome, kind)
    assert (answer.status, answer.body) == (status, body)
    assert not answer.headers


def test_a_busy_meeting_is_a_429_with_retry_after_and_the_backlog_it_counted() -> None:
    answer = http_answer(Busy(3, "meeting", 150), "message")
    assert answer.status == 429 and answer.headers == {"Retry-After": "3"}
    assert answer.body == {
        "error": "busy",
        "reason": "the meeting backlog is full (150 messages waiting to be sent); try again later",
    }


def test_a_busy_sender_is_told_it_is_their_own_backlog() -> None:
    answer = http_answer(Busy(1, "user", 50), "message")
    assert answer.status == 429 and answer.headers == {"Retry-After": "1"}
    assert answer.body["reason"] == "your backlog is full (50 of your messages waiting to be sent); try again later"
