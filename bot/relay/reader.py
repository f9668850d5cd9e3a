"""Meeting readers: poll each live meeting's thread and fan new Teams messages out to the users in the call."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timedelta
from functools import partial

from ..config import RelaySection
from ..errors import NotInCallError, PermanentError, ThrottledError, TransientError
from ..formatting import html_to_text
from ..metrics import Metrics
from ..models import ChatMessageView, Direction, IdentityMode, Session, SessionState
from ..store import NewDelivery, Store, utcnow
from ..store.outage import outlasting
from ..tasks import TaskSet
from .identities import IdentityBroker
from .outbox import BRIDGE_ID, RETRY, ChatApi, OutboundDispatcher

log = logging.getLogger(__name__)
# Re-read a little before the cursor: a message stored just before a newer one may become visible after it.
OVERLAP = timedelta(seconds=5)
STORE_EVERY = 6
MIN_PAUSE = 0.1
"""Of an interval: reads that take longer than the interval still leave the service this much of a pause."""
CHAT_TYPES = ("text", "html")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _modified(m: ChatMessageView) -> datetime:
    return max(t for t in (m.created_on, m.edited_on, m.deleted_on) if t is not None)


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
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._chat = chat
        self._broker = broker
        self._dispatcher = dispatcher
        self._settings = settings
        self._tasks = tasks
        self._running: dict[str, asyncio.Task[None]] = {}
        self._pokes: set[str] = set()
        self._pauses: dict[str, asyncio.Future[None]] = {}
        self._seen: dict[str, set[tuple[str, str]]] = {}
        """Per meeting, the (message id, version) pairs its last read handled. Each read goes back OVERLAP before
        the cursor, so on a busy thread most of what it returns was handled the round before: known here, it
        costs no store round trip. The store's seen_messages stays the authority (after a restart this is empty)."""
        self.polls = 0

    def poke(self, meeting_id: str) -> None:
        """A chat event says the thread changed: read it now instead of at the next poll."""
        waiter = self._pauses.get(meeting_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        else:
            self._pokes.add(meeting_id)  # mid-read: the next pause ends at once
        self.ensure(meeting_id)

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
        last_news: float | None = None
        failures = 0
        # Who is in the call and where the cursor stands, looked up again only after a read that returned something,
        # after an error, and every STORE_EVERY quiet rounds: an idle meeting's read then costs no store queries.
        quiet = STORE_EVERY
        reader = thread_id = ""
        cursor: datetime | None = None
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            if quiet >= STORE_EVERY:
                sessions = await self._store.sessions(meeting_id, [SessionState.IN_CALL])
                meeting = await self._store.get_meeting(meeting_id)
                if not sessions or meeting is None or meeting.thread_id is None:
                    self._seen.pop(meeting_id, None)
                    return  # started again when someone is in the call
                thread_id = meeting.thread_id
                who = meeting.relay_identity if meeting.identity_mode == IdentityMode.RELAY else None
                who = who or sessions[0].identity_id
                assert who is not None
                reader = who
                floor = min((s.joined_at for s in sessions if s.joined_at is not None), default=None)
                cursor = datetime.fromisoformat(meeting.cursor) if meeting.cursor else floor
                quiet = 0
            quiet += 1
            try:
                self.polls += 1
                read_at = utcnow()
                messages = await self._chat.list_since(reader, thread_id, cursor)
                failures = 0
            except NotInCallError:
                quiet = STORE_EVERY  # the reader identity left: pick another from who is in the call now
                await asyncio.sleep(self._settings.poll_active_s)
                continue
            except (TransientError, PermanentError) as exc:
                # A permanent error belongs to this reader identity (deleted a moment ago, token refused): the next
                # round picks the reader again from who is in the call now, so the meeting's reader never dies.
                failures += 1
                if isinstance(exc, ThrottledError):
                    self._metrics.throttled.labels("list").inc()
                log.warning("meeting %s: reading the thread failed: %s", meeting_id, exc)
                quiet = STORE_EVERY
                await asyncio.sleep(RETRY.delay(failures, exc.retry_after if isinstance(exc, TransientError) else None))
                continue
            if messages:
                if quiet > 1:
                    # Delivered to whoever is in the call now, not when the store was last asked.
                    sessions = await self._store.sessions(meeting_id, [SessionState.IN_CALL])
                if await self._fan_out(meeting_id, messages, sessions, cursor, read_at - OVERLAP):
                    last_news = time.monotonic()
                quiet = STORE_EVERY
            idle = last_news is None or time.monotonic() - last_news > self._settings.idle_after_s
            interval = self._settings.poll_idle_s if idle else self._settings.poll_active_s
            # From the start of one read to the next: a message waits at most one interval for the read that finds it,
            # not an interval plus however long the last read and its fan-out took.
            await self._pause(meeting_id, max(interval - (loop.time() - began), interval * MIN_PAUSE))

    async def _fan_out(
        self,
        meeting_id: str,
        messages: list[ChatMessageView],
        sessions: list[Session],
        cursor: datetime | None,
        settled: datetime,
    ) -> bool:
        """`settled`: OVERLAP before the read began. Whatever changed before it was visible to the read, so was in
        it: the cursor may move up to it, and a quiet thread's reads come back empty instead of re-reading its last
        messages (each costs the SDK a deserialisation) on every poll."""
        news = False
        last: datetime | None = None
        known = self._seen.get(meeting_id, set())
        handled: set[tuple[str, str]] = set()
        for message in messages:
            modified = _modified(message)
            next_cursor = max(cursor, modified - OVERLAP) if cursor is not None else modified - OVERLAP
            last = next_cursor if last is None else max(last, next_cursor)
            version = message.version or modified.isoformat()
            handled.add((message.id, version))
            if message.type not in CHAT_TYPES or (message.id, version) in known:
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
            kind = "delete" if message.deleted_on else "edit" if message.edited_on else "message"
            body: dict[str, object] = {
                "messageId": message.id,
                "text": "" if kind == "delete" else html_to_text(message.content),
                "from": {"displayName": message.sender_display_name or "", "kind": "external" if author else "teams"},
                "sentAt": modified.isoformat(),
            }
            recipients = [
                s
                for s in sessions
                if s.joined_at is not None and s.joined_at <= message.created_on and s.user_id != author
            ]
            deliveries = [
                NewDelivery(
                    id=str(uuid.uuid4()),
                    direction=Direction.OUTBOUND,
                    meeting_id=meeting_id,
                    user_id=s.user_id,
                    kind=kind,
                    body=body,
                    session_id=s.id,
                )
                for s in recipients
            ]
            if await self._store.record_outbound(meeting_id, message.id, version, deliveries, next_cursor.isoformat()):
                news = True
                for s in recipients:
                    self._dispatcher.wake(s.user_id)
        if last is not None:
            # Only after a read that returned something: an empty read leaves nothing to skip, and no store write.
            last = max(last, settled)
        if last is not None and (cursor is None or last > cursor):
            # Our own and system messages advance the cursor too, so idle re-reads stay short.
            await self._store.update_meeting(meeting_id, cursor=last.isoformat())
        # Only once all of them were handled: a read cut short by an error is handled again in full.
        self._seen[meeting_id] = handled
        return news
