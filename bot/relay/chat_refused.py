"""Chat refused while in the call (a 403 though the leg is connected): users told once, messages held, a probe."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Protocol

from ..config import RelaySection
from ..errors import NotInCallError, PermanentError, TransientError
from ..metrics import Metrics
from ..models import Direction, Meeting, Session, SessionCondition, SessionState
from ..store import Store, utcnow
from ..tasks import TaskSet
from .ports import ChatApi
from .presence import notice

log = logging.getLogger(__name__)
CHAT_REFUSED = SessionCondition.CHAT_REFUSED
MIN_PAUSE_S = 0.05


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds)} seconds"


def refused_notice(meeting: str, hold_s: float) -> str:
    """What each user in the call is told, once, when the meeting's chat refuses them."""
    return (
        f"The meeting chat of {meeting} does not accept guest messages right now; you are still in the meeting. "
        f"What you send is kept for up to {_duration(hold_s)} and delivered if the chat opens again."
    )


def back_notice(meeting: str, released: int) -> str:
    kept = f" {released} kept {'message is' if released == 1 else 'messages are'} on the way." if released else ""
    return f"The meeting chat of {meeting} accepts your messages again.{kept}"


def expired_notice(meeting: str, count: int) -> str:
    noun = "message" if count == 1 else "messages"
    return f"{count} {noun} you sent could not be delivered: the meeting chat of {meeting} still refuses guests."


def failure_reason(reason: str) -> str:
    """A held message's final error once its hold ran out."""
    return f"chat refused while in the call: {reason}"


class RefusalEvents(Protocol):
    def notify(self, user_id: str) -> None:
        """Something was queued for this user."""

    def chat_back(self, meeting_id: str) -> None:
        """The meeting's chat works again: send what was held, read the thread."""


class ChatRefusals:
    """Per meeting: the service's words while its chat is refused, and one probe that reads the thread now and then.

    The condition is kept on each session in the call (so a restart picks it up, and the admin API shows it); a
    session that leaves the call leaves its condition behind.
    """

    def __init__(
        self,
        store: Store,
        chat: ChatApi,
        settings: RelaySection,
        tasks: TaskSet,
        events: RefusalEvents,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._chat = chat
        self._settings = settings
        self._tasks = tasks
        self._events = events
        self._metrics = metrics
        self._reasons: dict[str, str] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def reason(self, meeting_id: str) -> str | None:
        """The service's words while this meeting's chat is refused; None while it is not."""
        return self._reasons.get(meeting_id)

    async def refused(self, meeting_id: str, reason: str) -> None:
        """A connected leg was refused the meeting's chat: mark everyone in its call, and probe until it clears."""
        if meeting_id not in self._reasons:
            # Once when it starts and once when it ends, not on every refused send.
            log.warning("meeting %s: chat refused while in the call: %s", meeting_id, reason)
        self._reasons[meeting_id] = reason
        await self._mark(meeting_id)
        probe = self._probes.get(meeting_id)
        if probe is None or probe.done():
            self._probes[meeting_id] = self._tasks.spawn(self._probe(meeting_id), name=f"chat probe {meeting_id}")

    def joined(self, meeting_id: str) -> None:
        """A session of this meeting reached the call: while its chat is refused, that one is told too."""
        if meeting_id in self._reasons:
            self._tasks.spawn(self._mark(meeting_id), name=f"chat refused {meeting_id}")

    async def resume(self) -> None:
        """After a restart: probe every meeting whose sessions the store says are refused."""
        for session in await self._store.sessions(states=[SessionState.IN_CALL]):
            if session.condition == CHAT_REFUSED and session.meeting_id not in self._reasons:
                await self.refused(session.meeting_id, session.condition_reason or "chat refused")

    async def _refused_sessions(self, meeting_id: str) -> list[Session]:
        sessions = await self._store.sessions(meeting_id, [SessionState.IN_CALL])
        return [s for s in sessions if s.condition == CHAT_REFUSED]

    async def _mark(self, meeting_id: str) -> None:
        async with self._locks.setdefault(meeting_id, asyncio.Lock()):
            reason = self._reasons.get(meeting_id)
            if reason is None:
                return
            fresh = [s for s in await self._store.sessions(meeting_id, [SessionState.IN_CALL]) if s.condition is None]
            if not fresh:
                return
            meeting = await self._store.get_meeting(meeting_id)
            text = refused_notice(meeting.name if meeting is not None else "the meeting", self._settings.hold_refused_s)
            notices = [notice(s, text, CHAT_REFUSED) for s in fresh]
            await self._store.set_condition([s.id for s in fresh], CHAT_REFUSED, reason, notices)
        for session in fresh:
            self._events.notify(session.user_id)

    async def _pause(self, sessions: list[Session]) -> float:
        """Until the next probe, or sooner when a held message's time runs out first."""
        pause = self._settings.probe_refused_s
        oldest = await self._store.held_since(s.id for s in sessions)
        if oldest is not None:
            expires = oldest + timedelta(seconds=self._settings.hold_refused_s)
            pause = min(pause, (expires - utcnow()).total_seconds())
        return max(MIN_PAUSE_S, pause)

    async def _probe(self, meeting_id: str) -> None:
        rounds = 0
        try:
            while sessions := await self._refused_sessions(meeting_id):
                await asyncio.sleep(await self._pause(sessions))
                sessions = await self._refused_sessions(meeting_id)
                meeting = await self._store.get_meeting(meeting_id)
                if not sessions or meeting is None or meeting.thread_id is None:
                    return
                # In turn, so a reader whose own leg has just gone does not stand for everyone.
                identity = sessions[rounds % len(sessions)].identity_id
                rounds += 1
                assert identity is not None
                try:
                    # One read of what changed from now on: next to nothing to answer, and enough to be refused.
                    await self._chat.list_since(identity, meeting.thread_id, utcnow(), 1)
                except NotInCallError as exc:
                    self._reasons[meeting_id] = str(exc)
                except (TransientError, PermanentError) as exc:
                    log.debug("meeting %s: chat probe failed: %s", meeting_id, exc)
                else:
                    await self._clear(meeting, sessions)
                    return
                await self._expire(meeting, sessions)
        finally:
            self._reasons.pop(meeting_id, None)
            if self._probes.get(meeting_id) is asyncio.current_task():
                del self._probes[meeting_id]

    async def _clear(self, meeting: Meeting, sessions: list[Session]) -> None:
        notices = []
        for session in sessions:
            held = await self._store.count_held(session.id)
            notices.append(notice(session, back_notice(meeting.name, held), "chat_back"))
        released = await self._store.clear_condition([s.id for s in sessions], notices)
        log.warning("meeting %s: chat accepted again; %d held messages released", meeting.id, released)
        self._events.chat_back(meeting.id)
        for session in sessions:
            self._events.notify(session.user_id)

    async def _expire(self, meeting: Meeting, sessions: list[Session]) -> None:
        before = utcnow() - timedelta(seconds=self._settings.hold_refused_s)
        reason = failure_reason(self._reasons.get(meeting.id) or "chat refused")
        for session in sessions:
            failed = await self._store.expire_held(session.id, before, reason)
            if not failed:
                continue
            log.info("meeting %s: %d held messages failed: chat still refused", meeting.id, failed)
            self._metrics.failed(Direction.INBOUND, failed)
            await self._store.add_deliveries([notice(session, expired_notice(meeting.name, failed), "undelivered")])
            self._events.notify(session.user_id)
