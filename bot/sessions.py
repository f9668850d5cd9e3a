"""The session state machine (pure): which transitions are allowed and what the user is told about each."""

from __future__ import annotations

from .models import CallState, SessionState

S = SessionState
ACTIVE: frozenset[SessionState] = frozenset({S.REQUESTED, S.JOINING, S.LOBBY, S.IN_CALL})
FINAL: frozenset[SessionState] = frozenset({S.LEFT, S.ENDED, S.FAILED})
WAITING: frozenset[SessionState] = frozenset({S.REQUESTED, S.JOINING, S.LOBBY})

# An unexpected drop sends a session in the lobby or the call back to joining, to be re-joined.
_ALLOWED: dict[SessionState, frozenset[SessionState]] = {
    S.REQUESTED: frozenset({S.JOINING, S.LEFT, S.ENDED, S.FAILED}),
    S.JOINING: frozenset({S.LOBBY, S.IN_CALL, S.LEFT, S.ENDED, S.FAILED}),
    S.LOBBY: frozenset({S.JOINING, S.IN_CALL, S.LEFT, S.ENDED, S.FAILED}),
    S.IN_CALL: frozenset({S.JOINING, S.LEFT, S.ENDED, S.FAILED}),
    S.LEFT: frozenset(),
    S.ENDED: frozenset(),
    S.FAILED: frozenset(),
}


class TransitionError(ValueError):
    """A transition the state machine does not allow."""


def check_transition(current: SessionState, target: SessionState) -> None:
    if target not in _ALLOWED[current]:
        raise TransitionError(f"a session cannot go from {current} to {target}")


def can_transition(current: SessionState, target: SessionState) -> bool:
    return target in _ALLOWED[current]


def from_call(call: CallState) -> SessionState:
    """The session state a reported call state leads to."""
    return {
        CallState.LOBBY: S.LOBBY,
        CallState.CONNECTED: S.IN_CALL,
        CallState.REMOVED: S.LEFT,
        CallState.LEFT: S.LEFT,
        CallState.ENDED: S.ENDED,
        CallState.FAILED: S.FAILED,
        CallState.DROPPED: S.JOINING,
    }[call]


def notice(state: SessionState, meeting: str, reason: str | None = None) -> str | None:
    text = _notice(state, meeting, reason)
    # Meeting names may start a sentence ("the meeting has ended.").
    return text[:1].upper() + text[1:] if text else None


def _notice(state: SessionState, meeting: str, reason: str | None = None) -> str | None:
    """What the user is told on entering a state, in plain words; None when there is nothing to say."""
    if state == S.LOBBY:
        return f"You're waiting to be admitted to {meeting}."
    if state == S.IN_CALL:
        return f"You're in the meeting chat of {meeting}. What you send now reaches the meeting."
    if state == S.LEFT:
        if reason == "removed":
            return f"The organizer removed you from {meeting}."
        if reason in ("ended by an operator", "blocked by an operator", "meeting removed"):
            return f"An operator took you out of {meeting}."
        if reason == "inactive":
            return f"You were taken out of {meeting} because you were inactive."
        return f"You left {meeting}."
    if state == S.ENDED:
        return f"{meeting} has ended."
    if state == S.FAILED:
        return f"Could not connect you to {meeting}: {reason or 'unknown error'}."
    return None


REJOINING = "rejoining"
"""The reason a session that was in the lobby or the call carries while its dropped leg is joined again."""


def rejoin_notice(state: SessionState, meeting: str, was_in_call: bool) -> str | None:
    """What a re-joining session is told on reaching the lobby or the call again: only what is news to it.

    A leg joined again cannot read what was posted before its new join (ACS hides it), so a user who was in the
    call hears once that Teams messages from the gap may be missing; one who only waited in the lobby hears nothing
    new until admitted. Anything else is told as usual.
    """
    if state == S.IN_CALL and was_in_call:
        return (
            f"You're back in the meeting chat of {meeting}. "
            "Teams messages posted while the bridge was reconnecting may be missing."
        )
    if state == S.LOBBY and not was_in_call:
        return None
    return notice(state, meeting)


def undelivered_notice(count: int, meeting: str) -> str:
    noun = "message" if count == 1 else "messages"
    return f"{count} {noun} you sent while waiting to join {meeting} could not be delivered."
