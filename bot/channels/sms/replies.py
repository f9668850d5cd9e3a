"""What a phone is told about the intake's outcome for its JOIN or chat text, and what the inbox notes of it."""

from __future__ import annotations

from dataclasses import dataclass

from ...models import Session
from ...relay.outcomes import Accepted, Blocked, Busy, Held, NotAllowed, Outcome, Paused, UnknownMeeting, session_ref


@dataclass(frozen=True)
class Reply:
    text: str | None = None
    """The reply's key among the texts (commands.reply); None: the phone is told nothing now."""
    note: str | None = None
    """What the inbox notes of a text the intake refused (so a redelivery stays dropped); None when it kept one."""
    busy: bool = False
    """Tell the phone the meeting is busy, once until a text of theirs gets in."""


def join_reply(outcome: Outcome, current: Session | None) -> Reply:
    """`current`: the phone's session before the JOIN. Already in that meeting (or on the way), no session change
    will announce anything, so the phone is told where it stands."""
    if isinstance(outcome, Accepted | Held):
        there = current is not None and outcome.id == session_ref(current)
        return Reply("status" if there else None)
    if isinstance(outcome, UnknownMeeting):
        return Reply("unknown_meeting", "join refused")
    if isinstance(outcome, Paused | Blocked | NotAllowed):
        return Reply("not_allowed", "join refused")
    return Reply(None, "join refused")


def chat_reply(outcome: Outcome) -> Reply:
    if isinstance(outcome, Accepted | Held):
        return Reply()
    if isinstance(outcome, Busy):
        # The gateway already took the text, so it cannot be refused like a webhook: it is noted (a redelivery
        # stays dropped), not queued, and the phone is told.
        return Reply(None, "busy", busy=True)
    return Reply("no_session", "not in call")
