"""Tests for bot.sessions: every allowed and forbidden transition, call states, and what the user is told."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.models import CallState, SessionState
from bot.sessions import (
    ACTIVE,
    FINAL,
    WAITING,
    TransitionError,
    can_transition,
    check_transition,
    from_call,
    notice,
    undelivered_notice,
)

S = SessionState

# Written out independently of bot.sessions: the session lifecycle as the design describes it.
EXPECTED: dict[SessionState, set[SessionState]] = {
    S.REQUESTED: {S.JOINING, S.LEFT, S.ENDED, S.FAILED},
    S.JOINING: {S.LOBBY, S.IN_CALL, S.LEFT, S.ENDED, S.FAILED},
    S.LOBBY: {S.JOINING, S.IN_CALL, S.LEFT, S.ENDED, S.FAILED},
    # An unexpected drop sends an in-call session back to joining, to be re-joined.
    S.IN_CALL: {S.JOINING, S.LEFT, S.ENDED, S.FAILED},
    S.LEFT: set(),
    S.ENDED: set(),
    S.FAILED: set(),
}
ALLOWED = [(a, b) for a, targets in EXPECTED.items() for b in sorted(targets)]
FORBIDDEN = [(a, b) for a, b in itertools.product(S, S) if b not in EXPECTED[a]]


def test_the_tables_cover_every_pair() -> None:
    assert len(ALLOWED) + len(FORBIDDEN) == len(S) ** 2
    assert set(EXPECTED) == set(S)


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=lambda s: str(s))
def test_allowed_transition(current: SessionState, target: SessionState) -> None:
    assert can_transition(current, target)
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), FORBIDDEN, ids=lambda s: str(s))
def test_forbidden_transition(current: SessionState, target: SessionState) -> None:
    assert not can_transition(current, target)
    with pytest.raises(TransitionError) as caught:
        check_transition(current, target)
    assert str(current) in str(caught.value) and str(target) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_no_state_transitions_to_itself() -> None:
    assert not any(can_transition(s, s) for s in S)


def test_only_in_call_skips_the_lobby_or_goes_back() -> None:
    # Nothing reaches the call without passing through joining; nothing but a drop returns to joining.
    assert {a for a, b in ALLOWED if b == S.IN_CALL} == {S.JOINING, S.LOBBY}
    assert {a for a, b in ALLOWED if b == S.JOINING} == {S.REQUESTED, S.LOBBY, S.IN_CALL}


def test_state_groups() -> None:
    assert ACTIVE | FINAL == set(S)
    assert not ACTIVE & FINAL
    assert WAITING == ACTIVE - {S.IN_CALL}
    assert FINAL == {s for s in S if not EXPECTED[s]}


def test_every_active_state_can_end_every_way() -> None:
    for state in ACTIVE:
        assert FINAL <= EXPECTED[state]


def test_every_state_is_reachable_from_requested() -> None:
    seen, todo = {S.REQUESTED}, [S.REQUESTED]
    while todo:
        current = todo.pop()
        for nxt in S:
            if can_transition(current, nxt) and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(S)


# from_call --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "state"),
    [
        (CallState.LOBBY, S.LOBBY),
        (CallState.CONNECTED, S.IN_CALL),
        (CallState.REMOVED, S.LEFT),
        (CallState.LEFT, S.LEFT),
        (CallState.ENDED, S.ENDED),
        (CallState.FAILED, S.FAILED),
        (CallState.DROPPED, S.JOINING),
    ],
)
def test_from_call(call: CallState, state: SessionState) -> None:
    assert from_call(call) == state


def test_from_call_covers_every_call_state_and_agrees_on_finality() -> None:
    # A dropped leg is over, but its sessions are not: they go back to joining and the leg is joined again.
    for call in CallState:
        assert (from_call(call) in FINAL) == (call.final and call != CallState.DROPPED)


def test_a_joining_session_can_follow_every_call_report() -> None:
    # Whatever the connector reports first, the session in joining may take it (a drop leaves it joining).
    for call in CallState:
        target = from_call(call)
        assert target == S.JOINING or can_transition(S.JOINING, target)


# notices ----------------------------------------------------------------------------------------------------

NOTICES = [
    (S.LOBBY, None, "You're waiting to be admitted to Weekly sync."),
    (S.IN_CALL, None, "You're in the meeting chat of Weekly sync. What you send now reaches the meeting."),
    (S.LEFT, "removed", "The organizer removed you from Weekly sync."),
    (S.LEFT, "inactive", "You were taken out of Weekly sync because you were inactive."),
    (S.LEFT, None, "You left Weekly sync."),
    (S.LEFT, "user", "You left Weekly sync."),
    (S.ENDED, None, "Weekly sync has ended."),
    (S.FAILED, "the call could not be joined", "Could not connect you to Weekly sync: the call could not be joined."),
    (S.FAILED, None, "Could not connect you to Weekly sync: unknown error."),
]


@pytest.mark.parametrize(("state", "reason", "text"), NOTICES)
def test_notice_in_plain_words(state: SessionState, reason: str | None, text: str) -> None:
    assert notice(state, "Weekly sync", reason) == text


@pytest.mark.parametrize("state", [S.REQUESTED, S.JOINING])
def test_no_notice_before_anything_happened(state: SessionState) -> None:
    assert notice(state, "Weekly sync") is None


def test_every_state_the_user_must_know_about_has_a_notice() -> None:
    assert {s for s in S if notice(s, "M") is not None} == {S.LOBBY, S.IN_CALL, S.LEFT, S.ENDED, S.FAILED}


@given(
    meeting=st.text(min_size=1, max_size=40).filter(str.isprintable),
    reason=st.sampled_from([None, "removed", "inactive", "ended", "failed", "network down"]),
    state=st.sampled_from(list(S)),
)
def test_notices_name_the_meeting_on_one_line_without_state_ids(
    meeting: str, reason: str | None, state: SessionState
) -> None:
    text = notice(state, meeting, reason)
    if text is None:
        return
    # A notice that starts with the meeting's name capitalises it, as a sentence does.
    starts = meeting[:1].upper() + meeting[1:]
    assert meeting in text or text.startswith(starts)
    assert len(text.splitlines()) == 1
    leftover = text.replace(meeting, "").replace(starts, "").replace(reason or "", "")
    for raw in ("in_call", "requested", "lobby_", "None", "<", ">"):
        assert raw not in leftover, text


def test_undelivered_notice_singular_and_plural() -> None:
    assert undelivered_notice(1, "Weekly sync") == (
        "1 message you sent while waiting to join Weekly sync could not be delivered."
    )
    assert undelivered_notice(2, "Weekly sync") == (
        "2 messages you sent while waiting to join Weekly sync could not be delivered."
    )
    assert undelivered_notice(0, "M").startswith("0 messages ")
    assert undelivered_notice(21, "M").startswith("21 messages ")
