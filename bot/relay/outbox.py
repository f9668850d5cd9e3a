"""Outbox workers: one per meeting thread for sends into Teams, one per user for deliveries out to channels."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from ..backoff import Backoff
from ..channels.base import Channel
from ..config import RelaySection
from ..errors import NotInCallError, PermanentError, ThrottledError, TransientError
from ..formatting import merge_texts, relay_prefix, text_to_html
from ..metrics import Metrics
from ..models import ChatMessageView, Delivery, DeliveryState, Direction, ExternalUser, IdentityMode, SessionState
from ..phones import mask
from ..store import NewDelivery, Store, utcnow
from ..store.outage import outlasting
from ..store.outbox import BACKLOG_NOTICE
from ..tasks import TaskSet
from .pacing import Pacer
from .presence import Presence, notice, speaker_name

log = logging.getLogger(__name__)
BRIDGE_ID = "bridgeId"
# ACS refuses a chat message over about 28 K characters ("Message size exceeded"): a merge stops short of it.
MAX_CHAT_CHARS = 28_000
RETRY = Backoff(base_s=0.5, cap_s=60.0)
"""Between tries of a send or a delivery, and between failed reads of a thread."""
BACKLOG_TEXT = (
    "Too many messages from the meeting were waiting for you, so newer ones were not delivered. "
    "The ones before this notice were kept."
)


class ChatApi(Protocol):
    async def send(
        self,
        identity_id: str,
        thread_id: str,
        content: str,
        *,
        display_name: str | None = None,
        html: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> str: ...

    async def find_by_metadata(
        self, identity_id: str, thread_id: str, key: str, value: str, since: datetime | None
    ) -> str | None: ...

    async def list_since(
        self, identity_id: str, thread_id: str, start_time: datetime | None, page_size: int = ...
    ) -> list[ChatMessageView]: ...

    async def forget(self, identity_id: str) -> None: ...


def channel_of(user: ExternalUser | None) -> str:
    """sms, or webhook:<client> as its channel family: webhook."""
    return user.channel.partition(":")[0] if user is not None else "unknown"


def who(user_id: str) -> str:
    """A user id fit for a log line: phone numbers masked."""
    return "sms:" + mask(user_id.removeprefix("sms:")) if user_id.startswith("sms:") else user_id


class _Workers:
    """One worker per key, woken when work arrives; exits when idle and is started again on demand."""

    def __init__(self, tasks: TaskSet, label: str, store: Store) -> None:
        self._tasks = tasks
        self._label = label
        self._store = store
        self._wake: dict[str, asyncio.Event] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    def wake(self, key: str) -> None:
        self._wake.setdefault(key, asyncio.Event()).set()
        task = self._running.get(key)
        if task is None or task.done():
            self._running[key] = self._tasks.spawn(self._loop(key), name=f"{self._label} {key}")

    async def _loop(self, key: str) -> None:
        event = self._wake.setdefault(key, asyncio.Event())
        while True:
            event.clear()
            try:
                # Through an outage of the store the step waits, then runs again: the rows say where it stands.
                pause = await outlasting(self._store, partial(self.work, key))
            except Exception:
                log.exception("%s %s failed; trying again shortly", self._label, key)
                pause = 5.0
            if pause is None:
                if not event.is_set():
                    # Idle: the key is forgotten, so these maps hold the keys with work, not every one ever seen.
                    self._wake.pop(key, None)
                    self._running.pop(key, None)
                    return
                continue
            try:
                await asyncio.wait_for(event.wait(), timeout=pause)
            except TimeoutError:
                pass

    async def work(self, key: str) -> float | None:
        """Do what is due; return None when nothing is left, else seconds until the next try."""
        raise NotImplementedError


class InboundSender(_Workers):
    """Sends external users' messages into the meeting thread, in order, paced, never twice."""

    def __init__(
        self,
        store: Store,
        chat: ChatApi,
        presence: Presence,
        settings: RelaySection,
        tasks: TaskSet,
        notify: OutboundDispatcher,
        metrics: Metrics,
    ) -> None:
        super().__init__(tasks, "sender", store)
        self._metrics = metrics
        self._store = store
        self._chat = chat
        self._presence = presence
        self._settings = settings
        self._notify = notify
        self._pacers: dict[str, Pacer] = {}
        self._paced: set[str] = set()
        """Threads whose sends the pacer held back since their backlog was last empty."""

    async def work(self, key: str) -> float | None:
        # Enough rows to see whether a backlog is building; a merge fetches the head sender's own.
        rows = await self._store.pending(Direction.INBOUND, "meeting_id", key, limit=self._settings.merge_backlog)
        if not rows:
            self._paced.discard(key)
            return None
        head = rows[0]
        now = utcnow()
        if head.next_attempt_at is not None and head.next_attempt_at > now:
            return (head.next_attempt_at - now).total_seconds()
        meeting = await self._store.get_meeting(key)
        session = await self._store.get_session(head.session_id) if head.session_id is not None else None
        if meeting is None or session is None or session.identity_id is None:
            await self._store.finish([head.id], DeliveryState.FAILED, error="the meeting or session is gone")
            return 0.0
        if session.state != SessionState.IN_CALL or meeting.thread_id is None:
            held = DeliveryState.HELD if session.state in (SessionState.JOINING, SessionState.LOBBY) else None
            if held is not None:
                await self._store.finish([head.id], held)
            else:
                await self._store.finish([head.id], DeliveryState.FAILED, error=f"session is {session.state}")
            return 0.0
        pacer = self._pacers.setdefault(key, Pacer(tuple(self._settings.thread_send_limits)))
        wait = pacer.delay(time.monotonic())
        if wait > 0:
            self._paced.add(key)
            return wait
        user = await self._store.get_user(head.user_id)
        speaker = user.display_name if user else head.user_id

        def content(batch: list[Delivery]) -> str:
            texts = [str(r.body.get("text", "")) for r in batch]
            text = merge_texts(texts) if len(texts) > 1 else texts[0]
            if meeting.identity_mode == IdentityMode.RELAY:
                text = relay_prefix(speaker, text)
            return text_to_html(text)

        batch = [head]
        # Paced, every send counts: the last few of a backlog merge too, not one send each.
        if head.attempts or key in self._paced or len(rows) >= self._settings.merge_backlog:
            # A backlog is building: merge the sender's waiting messages into one, passing over others' in between,
            # so a burst from ten people under the thread's limit takes ten sends, not one per message. Nothing
            # overtakes a message its sender could have answered: others' messages reach them only from the
            # thread, once sent. A retry takes again the rows merged with the head last time (attempted as often
            # as it): the lookup below then finds them all in one message, or they are resent together, never one
            # of them twice.
            mine = await self._store.pending(
                Direction.INBOUND, "user_id", head.user_id, limit=self._settings.max_pending_per_user
            )
            for row in mine:
                if row.seq <= head.seq or row.meeting_id != key or row.session_id != head.session_id:
                    continue
                if row.attempts != head.attempts:
                    break
                if len(content([*batch, row])) > MAX_CHAT_CHARS:
                    break  # the same rows give the same cut, so a retry re-forms this very batch
                batch.append(row)
        html = content(batch)
        ids = [r.id for r in batch]
        try:
            if head.attempts:
                since = (head.created_at or now) - timedelta(minutes=1)
                found = await self._chat.find_by_metadata(
                    session.identity_id, meeting.thread_id, BRIDGE_ID, head.id, since
                )
                if found is not None:
                    await self._store.finish(ids, DeliveryState.DELIVERED, remote_id=found)
                    self._metrics.delivered(Direction.INBOUND, channel_of(user), head.created_at, len(ids))
                    return 0.0
            await self._store.mark_attempt(ids)
            try:
                remote = await self._chat.send(
                    session.identity_id,
                    meeting.thread_id,
                    html,
                    html=True,
                    display_name=speaker_name(meeting, user),
                    metadata={BRIDGE_ID: head.id},
                )
            finally:
                # Counted once the answer is back, as ACS counts it when the request arrives: a thread's first send
                # (a token, a connection) can arrive well after it left, and counted from then, the send ten later
                # arrived inside ACS's window and got a 429.
                pacer.record(time.monotonic())
        except NotInCallError:
            log.info("meeting %s: identity not in the call; holding its messages", key)
            await self._store.finish(ids, DeliveryState.HELD)
            self._presence.recheck(session)
            return 0.0
        except TransientError as exc:
            attempts = head.attempts + 1
            if attempts >= self._settings.max_attempts:
                await self._fail(ids, session.user_id, head, f"gave up after {attempts} attempts: {exc}")
                return 0.0
            delay = RETRY.delay(attempts, exc.retry_after)
            self._metrics.retries.labels(Direction.INBOUND.value).inc()
            if isinstance(exc, ThrottledError):
                self._metrics.throttled.labels("send").inc()
            level = logging.INFO if isinstance(exc, ThrottledError) else logging.WARNING
            log.log(level, "meeting %s: send failed (%s); retry in %.1f s", key, exc, delay)
            await self._store.finish(
                ids, DeliveryState.PENDING, error=str(exc), next_attempt_at=utcnow() + timedelta(seconds=delay)
            )
            return delay
        except PermanentError as exc:
            await self._fail(ids, session.user_id, head, str(exc))
            return 0.0
        await self._store.finish(ids, DeliveryState.DELIVERED, remote_id=remote)
        self._metrics.delivered(Direction.INBOUND, channel_of(user), head.created_at, len(ids))
        return 0.0

    async def _fail(self, ids: list[str], user_id: str, head: Delivery, reason: str) -> None:
        log.warning("meeting %s: message not delivered: %s", head.meeting_id, reason)
        await self._store.finish(ids, DeliveryState.FAILED, error=reason)
        self._metrics.failed(Direction.INBOUND, len(ids))
        session = await self._store.get_session(head.session_id) if head.session_id else None
        if session is not None:
            await self._store.add_deliveries([notice(session, "Your message could not be delivered.", "undelivered")])
            self._notify.wake(user_id)


class OutboundDispatcher(_Workers):
    """Delivers messages, edits, deletes and notices to each external user, in order, through their channel."""

    def __init__(
        self, store: Store, channels: Mapping[str, Channel], settings: RelaySection, tasks: TaskSet, metrics: Metrics
    ) -> None:
        super().__init__(tasks, "dispatcher", store)
        self._metrics = metrics
        self._store = store
        self._channels = channels
        self._settings = settings

    def channel_for(self, channel: str) -> Channel | None:
        return self._channels.get(channel.partition(":")[0])

    async def _bound(self, user_id: str) -> None:
        """Keep the user's waiting deliveries within max_pending_per_user: newer ones fail with backlog_full, and
        the user gets one notice (queued after those kept) until it has gone out."""
        keep = self._settings.max_pending_per_user
        if await self._store.outbound_backlog(user_id) <= keep:
            return
        trimmed = await self._store.trim_outbound(user_id, keep)
        if not trimmed:
            return
        user = await self._store.get_user(user_id)
        self._metrics.failed(Direction.OUTBOUND, len(trimmed))
        self._metrics.refused.labels(BACKLOG_NOTICE, channel_of(user)).inc(len(trimmed))
        if await self._store.backlog_notice_waiting(user_id):
            return
        head = trimmed[0]
        await self._store.add_deliveries(
            [
                NewDelivery(
                    str(uuid.uuid4()),
                    Direction.OUTBOUND,
                    head.meeting_id,
                    user_id,
                    "notice",
                    {"text": BACKLOG_TEXT, "state": BACKLOG_NOTICE},
                    session_id=head.session_id,
                )
            ]
        )
        log.info("%s: %d deliveries wait already; newer ones fail with %s", who(user_id), keep, BACKLOG_NOTICE)

    async def work(self, key: str) -> float | None:
        # Every new delivery wakes this worker, so the bound holds from the moment one is stored.
        await self._bound(key)
        rows = await self._store.pending(Direction.OUTBOUND, "user_id", key, limit=20)
        if not rows:
            return None
        head = rows[0]
        now = utcnow()
        if head.next_attempt_at is not None and head.next_attempt_at > now:
            return (head.next_attempt_at - now).total_seconds()
        user = await self._store.get_user(key)
        channel = self.channel_for(user.channel) if user is not None else None
        meeting = await self._store.get_meeting(head.meeting_id) if head.meeting_id else None
        if user is None or channel is None or (head.meeting_id and meeting is None):
            await self._store.finish([head.id], DeliveryState.FAILED, error="no user, meeting or channel for it")
            return 0.0
        if user.opted_out and not head.body.get("always"):
            await self._store.finish([head.id], DeliveryState.FAILED, error="the user opted out")
            return 0.0
        batch = [head]
        if channel.batch_window_s > 0:
            # Combine a burst into one delivery: wait for it to settle, but never hold the oldest for long.
            newest = max(r.created_at or now for r in rows)
            settle = channel.batch_window_s - (now - newest).total_seconds()
            if settle > 0 and (now - (head.created_at or now)).total_seconds() < 3 * channel.batch_window_s:
                return settle
            # A retry re-forms the same batch: the rows tried together carry the same attempt count.
            for row in rows[1:]:
                if row.meeting_id != head.meeting_id or row.attempts != head.attempts:
                    break
                batch.append(row)
        ids = [r.id for r in batch]
        await channel.turn(user, meeting, batch)
        await self._store.mark_attempt(ids)
        try:
            remote = await channel.deliver(user, meeting, batch)
        except TransientError as exc:
            attempts = head.attempts + 1
            if isinstance(exc, ThrottledError):
                # The provider asked us to wait and sent nothing: not a failed try. Counted, a number's send limit
                # (ACS: 200 texts a minute) failed deliveries after a few seconds of waiting in a busy minute.
                await self._store.uncount_attempt(ids)
            elif attempts >= self._settings.max_attempts:
                await self._store.finish(ids, DeliveryState.FAILED, error=f"gave up after {attempts} attempts: {exc}")
                self._metrics.failed(Direction.OUTBOUND, len(ids))
                return 0.0
            delay = RETRY.delay(attempts, exc.retry_after)
            self._metrics.retries.labels(Direction.OUTBOUND.value).inc()
            await self._store.finish(
                ids, DeliveryState.PENDING, error=str(exc), next_attempt_at=utcnow() + timedelta(seconds=delay)
            )
            return delay
        except PermanentError as exc:
            await self._store.finish(ids, DeliveryState.FAILED, error=str(exc))
            self._metrics.failed(Direction.OUTBOUND, len(ids))
            return 0.0
        await self._store.finish(ids, DeliveryState.DELIVERED, remote_id=remote)
        self._metrics.delivered(Direction.OUTBOUND, channel_of(user), head.created_at, len(ids))
        return 0.0

    async def resume(self) -> None:
        for user_id in await self._store.pending_keys(Direction.OUTBOUND, "user_id"):
            self.wake(user_id)
