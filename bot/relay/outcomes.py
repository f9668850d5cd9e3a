"""Outcomes: what the intake decided about one inbound request, typed; each door words them its own way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models import Session


@dataclass(frozen=True)
class Accepted:
    """Taken and stored: a join, a leave, a message queued for the meeting's thread, a forget."""

    id: str | None
    """session-<n> for a join, leave or call report, the delivery's id for a message; None for a forget."""
    status: str
    """After a join the session's state; after a call report what became of it (reported, unchanged, ignored);
    otherwise left, queued or forgotten."""
    state: str | None = None
    """For a message, the session's state when it was taken; for a call report, the leg's call state after it."""


@dataclass(frozen=True)
class Held:
    """A message taken while its sender waits to get into the call: it goes to the thread once they are in."""

    id: str
    state: str


@dataclass(frozen=True)
class UnknownMeeting:
    ref: str
    """The code (or id) the request named."""


@dataclass(frozen=True)
class Paused:
    """An operator paused the meeting."""


@dataclass(frozen=True)
class Blocked:
    """An operator blocked the sender."""


@dataclass(frozen=True)
class NotAllowed:
    """The meeting's allow-list does not name the sender."""


@dataclass(frozen=True)
class NotInCall:
    state: str
    """The sender's session's state; none when they have no session in the meeting."""


@dataclass(frozen=True)
class NotReported:
    """A call report the bridge cannot take for this session."""

    why: str
    """connector: the bridge holds the call legs itself; shared: the session's leg is the whole meeting's."""


@dataclass(frozen=True)
class Busy:
    """The meeting's or the sender's backlog of messages waiting for the thread is full."""

    retry_after: int
    """Seconds until a place is likely to free up."""
    scope: str
    """meeting or user"""
    waiting: int


Taken = Accepted | Held
Refusal = UnknownMeeting | Paused | Blocked | NotAllowed | NotInCall | NotReported | Busy
Outcome = Taken | Refusal


def session_ref(session: Session) -> str:
    """How an outcome names a session."""
    return f"session-{session.id}"


def record(outcome: Taken) -> dict[str, Any]:
    """The outcome as the inbox keeps it, the first answer a replay gets again. Refusals are not kept: they change
    nothing, so a retry with the same id is decided afresh."""
    if isinstance(outcome, Held):
        return {"id": outcome.id, "status": "held", "state": outcome.state}
    body: dict[str, Any] = {"id": outcome.id} if outcome.id is not None else {}
    body["status"] = outcome.status
    if outcome.state is not None:
        body["state"] = outcome.state
    return body


def restore(kept: dict[str, Any]) -> Taken:
    """The outcome an inbox row records (`record` undone). A row the SMS wing wrote for a text the intake never
    saw ({"handled": ...}) reads as accepted with that word as its status."""
    status = str(kept.get("status", kept.get("handled", "")))
    ident, state = kept.get("id"), kept.get("state")
    if status == "held" and isinstance(ident, str) and isinstance(state, str):
        return Held(ident, state)
    return Accepted(ident if isinstance(ident, str) else None, status, state if isinstance(state, str) else None)
