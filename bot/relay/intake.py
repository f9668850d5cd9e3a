"""Inbound intake: what an external user asked for (join, leave, a message, to be forgotten), or what their app
reports of its call, decided and stored before any answer. A door opens a request once, submits it once and words
the typed outcome its own way."""

from __future__ import annotations

import fnmatch
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .. import sessions as machine
from ..address import Address
from ..config import RelaySection
from ..metrics import Metrics
from ..models import CallState, DeliveryState, Direction, ExternalUser, Meeting, Session, SessionState
from ..store import NewDelivery, Store, utcnow
from ..store.outbox import BacklogFull
from .outcomes import (
    Accepted,
    Blocked,
    Busy,
    Held,
    NotAllowed,
    NotInCall,
    NotReported,
    Outcome,
    Paused,
    Refusal,
    Taken,
    UnknownMeeting,
    record,
    restore,
    session_ref,
)
from .pacing import THREAD_SEND_LIMITS
from .presence import Presence

log = logging.getLogger(__name__)
# A thread's sustained pace: a place in a full backlog frees up no sooner than one send.
SEND_INTERVAL_S = max(window / limit for limit, window in THREAD_SEND_LIMITS)
# The inbox's status column is older than typed outcomes; what the intake keeps there stays 202, as it always was.
KEPT_STATUS = 202


@dataclass(frozen=True)
class Ticket:
    """A request the inbox has not seen, as `open` found it; `submit` takes one, so no request is looked up twice."""

    channel: str
    """Whose ids these are: webhook:<client>, or sms:<gateway>."""
    provider_id: str


@dataclass(frozen=True)
class Sender:
    address: Address
    display_name: str | None = None
    """As the request names them; kept with the user once a request of theirs is taken."""
    user: ExternalUser | None = None
    """The stored user, when the door has them already (the SMS wing stores a phone's user before any command)."""


@dataclass(frozen=True)
class Join:
    meeting: str
    """The meeting's join code or id."""
    leaving: Session | None = None
    """The sender's session in another meeting, left once this one lets them in (a phone is in one at a time)."""


@dataclass(frozen=True)
class Leave:
    meeting: str


@dataclass(frozen=True)
class Message:
    meeting: str | Session
    """The meeting's join code or id, or the sender's session in it when the door has found that already."""
    text: str


@dataclass(frozen=True)
class Forget:
    """Forget the sender: their identity, sessions and stored messages go."""


@dataclass(frozen=True)
class Report:
    """The sender's own app, which holds their call leg, says where that call stands."""

    meeting: str
    state: CallState
    call_id: str | None = None
    """The app's own id of the call (the Calling SDK's call.id), when it gives one: a call it replaced by joining
    again is then told apart from the one it is in."""


Action = Join | Leave | Message | Forget | Report


class IntakeEvents(Protocol):
    def queued(self, meeting_id: str) -> None: ...

    async def forget(self, user_id: str) -> None: ...


def allowed(meeting: Meeting, user_id: str) -> bool:
    return any(fnmatch.fnmatchcase(user_id, pattern) for pattern in meeting.allow)


def refusal(meeting: Meeting | None, ref: str, user: ExternalUser | None, address: Address) -> Refusal | None:
    """Why this sender may not join or write to this meeting; None when they may."""
    if meeting is None:
        return UnknownMeeting(ref)
    if meeting.paused:
        return Paused()
    if user is not None and user.blocked:
        return Blocked()
    if not allowed(meeting, str(address)):
        return NotAllowed()
    return None


def admission(session: Session | None, hold_while_joining: bool) -> DeliveryState | NotInCall:
    """Where a message from this session goes: to the thread now (pending), held until its sender is in the call,
    or nowhere."""
    if session is None:
        return NotInCall("none")
    if session.state == SessionState.IN_CALL:
        return DeliveryState.PENDING
    if session.state in machine.WAITING and hold_while_joining:
        return DeliveryState.HELD
    return NotInCall(session.state.value)


def busy(full: BacklogFull, now: datetime) -> Busy:
    wait = SEND_INTERVAL_S
    if full.head_due is not None:
        # The oldest waits for a retry (ACS throttled or failed): nothing moves before it goes.
        wait = max(wait, (full.head_due - now).total_seconds())
    return Busy(max(1, math.ceil(wait)), full.scope, full.waiting)


class Intake:
    def __init__(
        self,
        store: Store,
        presence: Presence,
        settings: RelaySection,
        events: IntakeEvents,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._presence = presence
        self._settings = settings
        self._events = events
        self._metrics = metrics or Metrics()
        self._busy: set[str] = set()
        """Meetings refusing messages right now: their busy spell is logged once when it starts and ends."""

    async def open(self, channel: str, provider_id: str) -> Ticket | Taken:
        """The outcome kept for this provider id when the request was taken before (a replay gets it again), else
        the ticket to submit the request with."""
        found = await self._store.inbox_answer(channel, provider_id)
        return restore(found[1]) if found is not None else Ticket(channel, provider_id)

    async def find_meeting(self, ref: str) -> Meeting | None:
        return await self._store.meeting_by_code(ref) or await self._store.get_meeting(ref)

    async def submit(self, ticket: Ticket, sender: Sender, action: Action) -> Outcome:
        """Decide the request and store what it changes, with its outcome, before returning it."""
        if isinstance(action, Join):
            return await self._join(ticket, sender, action)
        if isinstance(action, Message):
            return await self._message(ticket, sender, action)
        if isinstance(action, Leave):
            return await self._leave(ticket, sender, action)
        if isinstance(action, Report):
            return await self._report(ticket, sender, action)
        await self._events.forget(str(sender.address))
        return await self._keep(ticket, Accepted(None, "forgotten"))

    async def _join(self, ticket: Ticket, sender: Sender, action: Join) -> Outcome:
        meeting = await self.find_meeting(action.meeting)
        user = await self._user(sender) if meeting is not None else None
        if (refused := refusal(meeting, action.meeting, user, sender.address)) is not None:
            return refused  # before the user is stored: a refusal stores nothing
        assert meeting is not None
        user = await self._named(sender, user)
        if action.leaving is not None and action.leaving.meeting_id != meeting.id:
            await self._presence.leave(action.leaving)
        session = await self._presence.join(user, meeting)
        return await self._keep(ticket, Accepted(session_ref(session), session.state.value))

    async def _leave(self, ticket: Ticket, sender: Sender, action: Leave) -> Outcome:
        user = await self._named(sender, await self._user(sender))
        meeting = await self.find_meeting(action.meeting)
        session = await self._store.active_session(user.id, meeting.id) if meeting is not None else None
        if session is None:
            return NotInCall("none")
        await self._presence.leave(session)
        return await self._keep(ticket, Accepted(session_ref(session), "left"))

    async def _report(self, ticket: Ticket, sender: Sender, action: Report) -> Outcome:
        if not self._presence.takes_reports:
            return NotReported("connector")
        meeting = await self.find_meeting(action.meeting)
        if meeting is None:
            return UnknownMeeting(action.meeting)
        # Neither a pause nor a block refuses a report: it tells what happened to a call, and the bridge must know.
        # Nor does it create or rename anyone: only a user with a session has a call to report on.
        user = await self._user(sender)
        session = await self._store.active_session(user.id, meeting.id) if user is not None else None
        if user is None or session is None:
            return NotInCall("none")
        if session.identity_id != user.identity_id:
            return NotReported("shared")  # the meeting's one leg: no one user's app holds it
        reported = await self._presence.report(session, action.state, action.call_id)
        if reported is None:
            return NotInCall(session.state.value)
        state = reported.state.value if reported.state is not None else None
        return await self._keep(ticket, Accepted(session_ref(session), reported.verdict.value, state))

    async def _message(self, ticket: Ticket, sender: Sender, action: Message) -> Outcome:
        session = action.meeting if isinstance(action.meeting, Session) else None
        if session is not None:
            ref, meeting = session.meeting_id, await self._store.get_meeting(session.meeting_id)
        else:
            assert isinstance(action.meeting, str)
            ref, meeting = action.meeting, await self.find_meeting(action.meeting)
        user = await self._user(sender) if meeting is not None else None
        if (refused := refusal(meeting, ref, user, sender.address)) is not None:
            return refused
        assert meeting is not None
        user = await self._named(sender, user)
        if session is None:
            session = await self._store.active_session(user.id, meeting.id)
        state = admission(session, self._settings.hold_while_joining)
        if isinstance(state, NotInCall):
            return state
        assert session is not None
        return await self._queue(ticket, sender, meeting, session, state, action.text)

    async def _queue(
        self, ticket: Ticket, sender: Sender, meeting: Meeting, session: Session, state: DeliveryState, text: str
    ) -> Outcome:
        delivery = NewDelivery(
            id=str(uuid.uuid4()),
            direction=Direction.INBOUND,
            meeting_id=meeting.id,
            user_id=session.user_id,
            kind="message",
            body={"text": text},
            state=state,
            session_id=session.id,
        )
        taken: Taken = (
            Accepted(delivery.id, "queued", session.state.value)
            if state == DeliveryState.PENDING
            else Held(delivery.id, session.state.value)
        )
        try:
            _, kept, stored = await self._store.record_inbound(
                ticket.channel,
                ticket.provider_id,
                KEPT_STATUS,
                record(taken),
                delivery,
                max_meeting=self._settings.max_pending_per_meeting,
                max_user=self._settings.max_pending_per_user,
            )
        except BacklogFull as full:
            # Refused like any other refusal: nothing stored, the id not remembered, so a retry is decided afresh.
            return self._refuse_busy(sender, meeting, full)
        await self._taken(meeting, session, state)
        return taken if stored else restore(kept)

    async def _taken(self, meeting: Meeting, session: Session, state: DeliveryState) -> None:
        if meeting.id in self._busy:
            self._busy.discard(meeting.id)
            log.info("meeting %s accepts messages again", meeting.id)
        await self._store.touch_session(session.id)
        if state == DeliveryState.HELD:
            # Reaching the call releases a session's held messages: if it got there after its state was read for
            # this message, nothing else would release this one.
            fresh = await self._store.get_session(session.id)
            if fresh is not None and fresh.state == SessionState.IN_CALL:
                await self._store.release_held(session.id)
                state = DeliveryState.PENDING
        if state == DeliveryState.PENDING:
            self._events.queued(meeting.id)

    async def _user(self, sender: Sender) -> ExternalUser | None:
        return sender.user if sender.user is not None else await self._store.get_user(str(sender.address))

    async def _named(self, sender: Sender, user: ExternalUser | None) -> ExternalUser:
        """The sender as a stored user, under the name the request gave (stored only when new or renamed)."""
        if user is not None and sender.display_name in (None, user.display_name):
            return user
        return await self._store.upsert_user(str(sender.address), sender.address.channel, sender.display_name)

    async def _keep(self, ticket: Ticket, taken: Taken) -> Taken:
        """Store the outcome with the request's id; a request that raced this one to it gets the first outcome."""
        _, kept, stored = await self._store.record_inbound(
            ticket.channel, ticket.provider_id, KEPT_STATUS, record(taken), None
        )
        return taken if stored else restore(kept)

    def _refuse_busy(self, sender: Sender, meeting: Meeting, full: BacklogFull) -> Busy:
        self._metrics.refused.labels("busy", sender.address.kind).inc()
        if full.scope == "meeting" and meeting.id not in self._busy:
            self._busy.add(meeting.id)
            log.info("meeting %s is busy: %d messages wait to be sent; refusing new ones", meeting.id, full.waiting)
        return busy(full, utcnow())
