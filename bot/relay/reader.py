"""Meeting readers: read each live meeting's thread, polled or on chat events, and fan new Teams messages out."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from ..config import RelaySection
from ..errors import NotInCallError, PermanentError, ThrottledError, TransientError
from ..metrics import Metrics
from ..models import ChatMessageView, Direction, Session, SessionState
from ..store import NewDelivery, Store, utcnow
from ..store.outage import outlasting
from ..tasks import TaskSet
from . import cadence, plans
from .identities import IdentityBroker
from .ports import ChatApi
from .workers import BRIDGE_ID, OutboundDispatcher

log = logging.getLogger(__name__)
# Who is in the call and where the cursor stands are looked up again only after a read that returned something,
# after an error, and every STORE_EVERY quiet rounds: an idle meeting's read then costs no store queries.
STORE_EVERY = 6
Forbidden = Callable[[str, str, str], Awaitable[bool]]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass
class _View:
    """What a reader knows of its meeting between store lookups."""

    sessions: list[Session]
    reader: str
    thread_id: str
    cursor: datetime | None
    sessions_at: datetime
    """When `sessions` was read: a message posted after it may have an audience that joined since."""


@dataclass
class _Round:
    """A reader's counts from one read to the next."""

    quiet: int = STORE_EVERY
    failures: int = 0
    last_news: float | None = None
    """When a read last found news (loop time); None while the meeting is idle."""


class MeetingReaders:
    def __init__(
        self,
        store: Store,
        chat: ChatApi,
        broker: IdentityBroker,
        dispatcher: OutboundDispatcher,
        settings: RelaySection,
        tasks: TaskSet,
        metrics: Metrics,
        *,
        forbidden: Forbidden | None = None,
        chat_events: bool = False,
    ) -> None:
        """`forbidden` hears of a 403 on a thread (meeting, reader identity, reason) and says whether the meeting's
        chat refuses guests in the call (then the reader slows to its idle pace until that clears). `chat_events`:
        Event Grid chat events are subscribed, so a meeting whose events arrive is not polled."""
        self._forbidden = forbidden
        self._metrics = metrics
        self._store = store
        self._chat = chat
        self._broker = broker
        self._dispatcher = dispatcher
        self._settings = settings
        self._tasks = tasks
        self._events = chat_events
        self._running: dict[str, asyncio.Task[None]] = {}
        self._pokes: set[str] = set()
        self._pauses: dict[str, asyncio.Future[None]] = {}
        self._seen: dict[str, set[tuple[str, str]]] = {}
        """Per meeting, the (message id, version) pairs its last read handled. Each read goes back OVERLAP before
        the cursor, so on a busy thread most of what it returns was handled the round before: known here, it
        costs no store round trip. The store's seen_messages stays the authority (after a restart this is empty)."""
        self._watches: dict[str, cadence.Watch] = {}
        """Per meeting with a reader, with chat events on: what its events announced and whether they arrive."""
        self.polls = 0

    def poke(self, meeting_id: str, announced: Sequence[tuple[str, str]] = ()) -> None:
        """A chat event says the thread changed (these message versions): read it now, not at the next poll."""
        if self._events:
            watch = self._watch(meeting_id)
            self._watches[meeting_id] = cadence.announce(watch, announced, asyncio.get_running_loop().time())
        waiter = self._pauses.get(meeting_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        else:
            self._pokes.add(meeting_id)  # mid-read: the next pause ends at once
        self.ensure(meeting_id)

    def _watch(self, meeting_id: str) -> cadence.Watch:
        watch = self._watches.get(meeting_id)
        if watch is None:
            watch = self._watches[meeting_id] = cadence.Watch(since=utcnow())
        return watch

    async def _pause(self, meeting_id: str, seconds: float) -> None:
        if meeting_id in self._pokes:
            self._pokes.discard(meeting_id)
            return
        # A future and a timer, not wait_for on an Event: wait_for wraps the wait in a task of its own, which costs
        # more than the rest of an idle meeting's round does, a thousand meetings each every poll_idle_s.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pauses[meeting_id] = waiter
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            del self._pauses[meeting_id]

    def ensure(self, meeting_id: str) -> None:
        task = self._running.get(meeting_id)
        if task is None or task.done():
            self._running[meeting_id] = self._tasks.spawn(
                outlasting(self._store, partial(self._run, meeting_id)), name=f"reader {meeting_id}"
            )

    async def resume(self) -> None:
        for session in await self._store.sessions(states=[SessionState.IN_CALL]):
            self.ensure(session.meeting_id)

    async def _run(self, meeting_id: str) -> None:
        # A reader starts idle: a meeting its users just joined, or one taken up again after a restart, has no
        # conversation going, and polling each of a thousand such meetings every poll_active_s would cost a read per
        # meeting per second. The first message it reads (or an Event Grid poke) makes it active.
        state = _Round()
        view: _View | None = None
        loop = asyncio.get_running_loop()
        slot = cadence.slot_of(meeting_id)
        if self._events:
            self._watch(meeting_id)
        try:
            while True:
                began = loop.time()
                if view is None or state.quiet >= STORE_EVERY:
                    view = await self._look(meeting_id)
                    if view is None:
                        return  # started again when someone is in the call
                    state.quiet = 0
                state.quiet += 1
                read_at = utcnow()
                messages = await self._read(meeting_id, view, state)
                if messages is None:
                    continue  # it paused already, as long as the failure asked
                watch = self._check(meeting_id, messages, read_at) if self._events else None
                if messages:
                    if state.quiet > 1 or any(m.created_on > view.sessions_at for m in messages):
                        # Delivered to whoever is in the call now, not when the store was last asked: even a view
                        # taken for this very read is old for a message posted while the read waited on a slow
                        # service, and someone may have come into the call in between (a leg joined again after a
                        # crash, say).
                        view.sessions_at = utcnow()
                        view.sessions = await self._store.sessions(meeting_id, [SessionState.IN_CALL])
                    if await self._fan_out(meeting_id, messages, view.sessions, view.cursor, read_at - plans.OVERLAP):
                        state.last_news = loop.time()
                    state.quiet = STORE_EVERY
                pause = cadence.poll_pause(began, loop.time(), state.last_news, watch, slot, self._settings)
                await self._pause(meeting_id, pause)
        finally:
            self._seen.pop(meeting_id, None)
            watch = self._watches.pop(meeting_id, None)
            if watch is not None and not watch.trusted:
                self._metrics.meetings_polled.dec()

    def _check(self, meeting_id: str, messages: list[ChatMessageView], read_at: datetime) -> cadence.Watch:
        """What the read found against what the meeting's events announced; a miss puts the meeting on polling."""
        known = self._seen.get(meeting_id, set())
        new = [
            ((m.id, plans.version_of(m)), plans.modified_at(m))
            for m in messages
            if plans.relayable(m) and (m.id, plans.version_of(m)) not in known
        ]
        now = asyncio.get_running_loop().time()
        before = self._watch(meeting_id)
        watch = cadence.settle(cadence.found(before, new, read_at, now), now)
        if watch.missed_at != before.missed_at:
            self._metrics.events_missed.inc()
        if before.trusted and not watch.trusted:
            self._metrics.meetings_polled.inc()
            log.info("meeting %s: a read found a message no chat event announced: polling it", meeting_id)
        elif watch.trusted and not before.trusted:
            self._metrics.meetings_polled.dec()
            log.info("meeting %s: its chat events arrive again: reading on them", meeting_id)
        self._watches[meeting_id] = watch
        return watch

    async def _look(self, meeting_id: str) -> _View | None:
        """Who is in the call, who reads for them and from where; None when nobody is in the call."""
        taken = utcnow()
        sessions = await self._store.sessions(meeting_id, [SessionState.IN_CALL])
        meeting = await self._store.get_meeting(meeting_id)
        if not sessions or meeting is None or meeting.thread_id is None:
            return None
        reader = plans.reader_of(meeting, sessions)
        assert reader is not None
        return _View(sessions, reader, meeting.thread_id, plans.start_cursor(meeting, sessions), taken)

    async def _read(self, meeting_id: str, view: _View, state: _Round) -> list[ChatMessageView] | None:
        """The thread's messages since the cursor; None, after a pause, when the read failed."""
        try:
            self.polls += 1
            messages = await self._chat.list_since(view.reader, view.thread_id, view.cursor)
        except NotInCallError as exc:
            state.quiet = STORE_EVERY  # the reader identity left: pick another from who is in the call now
            refused = self._forbidden is not None and await self._forbidden(meeting_id, view.reader, str(exc))
            await asyncio.sleep(self._settings.poll_idle_s if refused else self._settings.poll_active_s)
            return None
        except (TransientError, PermanentError) as exc:
            # A permanent error belongs to this reader identity (deleted a moment ago, token refused): the next
            # round picks the reader again from who is in the call now, so the meeting's reader never dies.
            state.failures += 1
            if isinstance(exc, ThrottledError):
                self._metrics.throttled.labels("list").inc()
            log.warning("meeting %s: reading the thread failed: %s", meeting_id, exc)
            state.quiet = STORE_EVERY
            await asyncio.sleep(plans.read_backoff(exc, state.failures))
            return None
        state.failures = 0
        return messages

    async def _fan_out(
        self,
        meeting_id: str,
        messages: list[ChatMessageView],
        sessions: list[Session],
        cursor: datetime | None,
        settled: datetime,
    ) -> bool:
        """Each new message (or new version of one) to the users in the call, once, its cursor stored with it; then
        the cursor past the read (plans.next_cursor). True when any delivery was stored."""
        news = False
        known = self._seen.get(meeting_id, set())
        handled: set[tuple[str, str]] = set()
        for message in messages:
            version = plans.version_of(message)
            handled.add((message.id, version))
            if not plans.relayable(message) or (message.id, version) in known:
                continue
            author: str | None = None
            if self._broker.ours(message.sender_id):
                # Another external user's message, relayed by us: the others in the call see it as Teams does, its
                # author never gets it back. Its bridge id names the delivery that carried it, and so the author.
                origin_id = message.metadata.get(BRIDGE_ID)
                origin = await self._store.get_delivery(origin_id) if origin_id else None
                if origin is None:
                    continue
                author = origin.user_id
            out = plans.teams_message(message, sessions, author)
            deliveries = [_delivery(meeting_id, out.kind, out.body, s) for s in out.recipients]
            at = plans.message_cursor(cursor, message).isoformat()
            if await self._store.record_outbound(meeting_id, message.id, version, deliveries, at):
                news = True
                for s in out.recipients:
                    self._dispatcher.wake(s.user_id)
        moved = plans.next_cursor(cursor, messages, settled)
        if moved is not None:
            await self._store.update_meeting(meeting_id, cursor=moved.isoformat())
        # Only once all of them were handled: a read cut short by an error is handled again in full.
        self._seen[meeting_id] = handled
        return news


def _delivery(meeting_id: str, kind: str, body: dict[str, object], session: Session) -> NewDelivery:
    return NewDelivery(
        id=str(uuid.uuid4()),
        direction=Direction.OUTBOUND,
        meeting_id=meeting_id,
        user_id=session.user_id,
        kind=kind,
        body=body,
        session_id=session.id,
    )
