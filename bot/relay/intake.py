"""Inbound intake: what an external user asked for (join, leave, a message), decided and stored before any answer."""

from __future__ import annotations

import fnmatch
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import sessions as machine
from ..config import RelaySection
from ..metrics import Metrics
from ..models import DeliveryState, Direction, ExternalUser, Meeting, SessionState
from ..store import NewDelivery, Store, utcnow
from ..store.outbox import BacklogFull
from .pacing import THREAD_SEND_LIMITS
from .presence import Presence

log = logging.getLogger(__name__)
# A thread's sustained pace: a place in a full backlog frees up no sooner than one send.
SEND_INTERVAL_S = max(window / limit for limit, window in THREAD_SEND_LIMITS)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class IntakeEvents(Protocol):
    def queued(self, meeting_id: str) -> None: ...


def allowed(meeting: Meeting, user_id: str) -> bool:
    return any(fnmatch.fnmatchcase(user_id, pattern) for pattern in meeting.allow)


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

    async def find_meeting(self, ref: str) -> Meeting | None:
        return await self._store.meeting_by_code(ref) or await self._store.get_meeting(ref)

    async def _gate(self, user_id: str, meeting_ref: str) -> tuple[Meeting | None, Answer | None]:
        meeting = await self.find_meeting(meeting_ref)
        if meeting is None:
            return None, Answer(404, {"error": "unknown_meeting", "reason": f"no meeting with code {meeting_ref!r}"})
        if meeting.paused:
            return None, Answer(403, {"error": "paused", "reason": "this meeting is paused by an operator"})
        user = await self._store.get_user(user_id)
        if user is not None and user.blocked:
            return None, Answer(403, {"error": "blocked", "reason": "this user is blocked"})
        if not allowed(meeting, user_id):
            return None, Answer(403, {"error": "not_allowed", "reason": "this user may not join this meeting"})
        return meeting, None

    async def refusal(self, user_id: str, meeting_ref: str) -> Answer | None:
        """Why this user may not join or write to this meeting (404, 403); None when they may."""
        return (await self._gate(user_id, meeting_ref))[1]

    async def record(
        self, channel: str, provider_id: str, answer: Answer, delivery: NewDelivery | None = None
    ) -> Answer:
        if answer.status >= 300:
            # A refusal changed nothing, so it is not remembered: the sender's retry with the same id (once the
            # user joined, the meeting was added...) is decided afresh instead of getting a stale refusal.
            assert delivery is None
            return answer
        status, body, _ = await self._store.record_inbound(channel, provider_id, answer.status, answer.body, delivery)
        return Answer(status, body)

    async def replay(self, channel: str, provider_id: str) -> Answer | None:
        found = await self._store.inbox_answer(channel, provider_id)
        return Answer(*found) if found is not None else None

    async def join(self, channel: str, provider_id: str, user: ExternalUser, meeting_ref: str) -> Answer:
        if (seen := await self.replay(channel, provider_id)) is not None:
            return seen
        meeting, refusal = await self._gate(user.id, meeting_ref)
        if meeting is None:
            assert refusal is not None
            return await self.record(channel, provider_id, refusal)
        session = await self._presence.join(user, meeting)
        return await self.record(
            channel, provider_id, Answer(202, {"id": f"session-{session.id}", "status": session.state.value})
        )

    async def leave(self, channel: str, provider_id: str, user: ExternalUser, meeting_ref: str) -> Answer:
        if (seen := await self.replay(channel, provider_id)) is not None:
            return seen
        meeting = await self.find_meeting(meeting_ref)
        session = await self._store.active_session(user.id, meeting.id) if meeting is not None else None
        if meeting is None or session is None:
            answer = Answer(409, {"error": "not_in_call", "state": "none", "reason": "there is no session to leave"})
            return await self.record(channel, provider_id, answer)
        await self._presence.leave(session)
        return await self.record(channel, provider_id, Answer(202, {"id": f"session-{session.id}", "status": "left"}))

    async def message(self, channel: str, provider_id: str, user: ExternalUser, meeting_ref: str, text: str) -> Answer:
        if (seen := await self.replay(channel, provider_id)) is not None:
            return seen
        meeting, refusal = await self._gate(user.id, meeting_ref)
        if meeting is None:
            assert refusal is not None
            return await self.record(channel, provider_id, refusal)
        session = await self._store.active_session(user.id, meeting.id)
        if session is None:
            answer = Answer(409, {"error": "not_in_call", "state": "none", "reason": "join the meeting first"})
            return await self.record(channel, provider_id, answer)
        if session.state == SessionState.IN_CALL:
            state = DeliveryState.PENDING
        elif session.state in machine.WAITING and self._settings.hold_while_joining:
            state = DeliveryState.HELD
        else:
            answer = Answer(
                409,
                {
                    "error": "not_in_call",
                    "state": session.state.value,
                    "reason": "messages are relayed only while you are in the meeting call",
                },
            )
            return await self.record(channel, provider_id, answer)
        delivery = NewDelivery(
            id=str(uuid.uuid4()),
            direction=Direction.INBOUND,
            meeting_id=meeting.id,
            user_id=user.id,
            kind="message",
            body={"text": text},
            state=state,
            session_id=session.id,
        )
        status = "queued" if state == DeliveryState.PENDING else "held"
        body = {"id": delivery.id, "status": status, "state": session.state.value}
        try:
            found, body, _ = await self._store.record_inbound(
                channel,
                provider_id,
                202,
                body,
                delivery,
                max_meeting=self._settings.max_pending_per_meeting,
                max_user=self._settings.max_pending_per_user,
            )
        except BacklogFull as full:
            # Refused like any other refusal: nothing stored, the id not remembered, so a retry is decided afresh.
            return self._refuse_busy(channel, meeting, full)
        answer = Answer(found, body)
        if meeting.id in self._busy:
            self._busy.discard(meeting.id)
            log.info("meeting %s accepts messages again", meeting.id)
        await self._store.touch_session(session.id)
        if state == DeliveryState.HELD:
            fresh = await self._store.get_session(session.id)
            if fresh is not None and fresh.state == SessionState.IN_CALL:
                await self._store.release_held(session.id)
                state = DeliveryState.PENDING
        if state == DeliveryState.PENDING:
            self._events.queued(meeting.id)
        return answer

    def _refuse_busy(self, channel: str, meeting: Meeting, full: BacklogFull) -> Answer:
        self._metrics.refused.labels("busy", channel.partition(":")[0]).inc()
        if full.scope == "meeting":
            reason = f"the meeting backlog is full ({full.waiting} messages waiting to be sent); try again later"
            if meeting.id not in self._busy:
                self._busy.add(meeting.id)
                log.info("meeting %s is busy: %d messages wait to be sent; refusing new ones", meeting.id, full.waiting)
        else:
            reason = f"your backlog is full ({full.waiting} of your messages waiting to be sent); try again later"
        wait = SEND_INTERVAL_S
        if full.head_due is not None:
            # The oldest waits for a retry (ACS throttled or failed): nothing moves before it goes.
            wait = max(wait, (full.head_due - utcnow()).total_seconds())
        retry_after = str(max(1, math.ceil(wait)))
        return Answer(429, {"error": "busy", "reason": reason}, {"Retry-After": retry_after})
