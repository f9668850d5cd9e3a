"""Outbox workers: one per meeting thread for sends into Teams, one per user for deliveries out to channels."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from functools import partial

from ..address import Address, masked
from ..config import RelaySection
from ..errors import BridgeError, PermanentError, ThrottledError, TransientError
from ..metrics import Metrics
from ..models import (
    Delivery,
    DeliveryState,
    Direction,
    ExternalUser,
    Meeting,
    Session,
)
from ..store import NewDelivery, Store, utcnow
from ..store.outage import outlasting
from ..store.outbox import BACKLOG_NOTICE
from ..tasks import TaskSet
from . import plans
from .pacing import Pacer
from .ports import Channel, ChatApi
from .presence import Presence, notice, speaker_name

log = logging.getLogger(__name__)
BRIDGE_ID = "bridgeId"
BACKLOG_TEXT = (
    "Too many messages from the meeting were waiting for you, so newer ones were not delivered. "
    "The ones before this notice were kept."
)


def channel_of(user: ExternalUser | None) -> str:
    """The user's channel family (sms, webhook), as metrics label it."""
    return Address.of(user).kind if user is not None else "unknown"


def who(user_id: str) -> str:
    """A user id fit for a log line: phone numbers masked."""
    return masked(user_id)


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
        if (due := plans.due_in(head, utcnow())) is not None:
            return due
        meeting = await self._store.get_meeting(key)
        session = await self._store.get_session(head.session_id) if head.session_id is not None else None
        if (finish := plans.unsendable(meeting, session)) is not None:
            await self._store.finish([head.id], finish.state, error=finish.error)
            return 0.0
        assert meeting is not None and session is not None
        pacer = self._pacers.setdefault(key, Pacer(tuple(self._settings.thread_send_limits)))
        wait = pacer.delay(time.monotonic())
        if wait > 0:
            self._paced.add(key)
            return wait
        user = await self._store.get_user(head.user_id)
        prefix = plans.prefix_for(meeting, user, head.user_id)
        batch = [head]
        # Paced, every send counts: the last few of a backlog merge too, not one send each.
        if plans.merges(head, key in self._paced, len(rows), self._settings.merge_backlog):
            limit = self._settings.max_pending_per_user
            mine = await self._store.pending(Direction.INBOUND, "user_id", head.user_id, limit=limit)
            batch = plans.inbound_batch(head, mine, prefix)
        return await self._send(meeting, session, user, batch, plans.chat_html(batch, prefix), pacer)

    async def _send(
        self,
        meeting: Meeting,
        session: Session,
        user: ExternalUser | None,
        batch: list[Delivery],
        html: str,
        pacer: Pacer,
    ) -> float:
        """One try of the batch: looked up first if an earlier try may have got through, else sent."""
        head, ids = batch[0], [r.id for r in batch]
        assert session.identity_id is not None and meeting.thread_id is not None
        try:
            if head.attempts:
                since = (head.created_at or utcnow()) - timedelta(minutes=1)
                found = await self._chat.find_by_metadata(
                    session.identity_id, meeting.thread_id, BRIDGE_ID, head.id, since
                )
                if found is not None:
                    return await self._delivered(ids, found, head, user)
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
        except (TransientError, PermanentError) as exc:
            verdict = plans.send_verdict(exc, head.attempts + 1, self._settings.max_attempts, utcnow())
            return await self._failed(ids, session, head, exc, verdict)
        return await self._delivered(ids, remote, head, user)

    async def _delivered(self, ids: list[str], remote: str, head: Delivery, user: ExternalUser | None) -> float:
        await self._store.finish(ids, DeliveryState.DELIVERED, remote_id=remote)
        self._metrics.delivered(Direction.INBOUND, channel_of(user), head.created_at, len(ids))
        return 0.0

    async def _failed(
        self,
        ids: list[str],
        session: Session,
        head: Delivery,
        exc: BridgeError,
        verdict: plans.Retry | plans.GiveUp | plans.Hold,
    ) -> float:
        if isinstance(verdict, plans.Hold):
            log.info("meeting %s: chat refused the identity (403); holding its messages", head.meeting_id)
            await self._store.finish(ids, DeliveryState.HELD)
            # In the call, the meeting's chat refuses guests; out of it, the leg is joined again: held either way.
            assert session.identity_id is not None
            await self._presence.forbidden(head.meeting_id, session.identity_id, str(exc))
            return 0.0
        if isinstance(verdict, plans.GiveUp):
            await self._fail(ids, session.user_id, head, verdict.reason)
            return 0.0
        self._metrics.retries.labels(Direction.INBOUND.value).inc()
        if isinstance(exc, ThrottledError):
            self._metrics.throttled.labels("send").inc()
        level = logging.INFO if isinstance(exc, ThrottledError) else logging.WARNING
        log.log(level, "meeting %s: send failed (%s); retry in %.1f s", head.meeting_id, exc, verdict.delay_s)
        await self._store.finish(ids, DeliveryState.PENDING, error=verdict.error, next_attempt_at=verdict.at)
        return verdict.delay_s

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

    def channel_for(self, user: ExternalUser) -> Channel | None:
        return self._channels.get(Address.of(user).kind)

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
        head, now = rows[0], utcnow()
        if (due := plans.due_in(head, now)) is not None:
            return due
        user = await self._store.get_user(key)
        channel = self.channel_for(user) if user is not None else None
        meeting = await self._store.get_meeting(head.meeting_id) if head.meeting_id else None
        if (why := plans.undeliverable(head, user, channel is not None, meeting)) is not None:
            await self._store.finish([head.id], DeliveryState.FAILED, error=why)
            return 0.0
        assert user is not None and channel is not None
        batch = plans.outbound_batch(rows, now, channel.batch_window_s)
        if isinstance(batch, plans.Wait):
            return batch.seconds
        ids = [r.id for r in batch]
        await channel.turn(user, meeting, batch)
        await self._store.mark_attempt(ids)
        try:
            remote = await channel.deliver(user, meeting, batch)
        except (TransientError, PermanentError) as exc:
            verdict = plans.delivery_verdict(exc, head.attempts + 1, self._settings.max_attempts, utcnow())
            return await self._failed(ids, verdict)
        await self._store.finish(ids, DeliveryState.DELIVERED, remote_id=remote)
        self._metrics.delivered(Direction.OUTBOUND, channel_of(user), head.created_at, len(ids))
        return 0.0

    async def _failed(self, ids: list[str], verdict: plans.Retry | plans.GiveUp) -> float:
        if isinstance(verdict, plans.GiveUp):
            await self._store.finish(ids, DeliveryState.FAILED, error=verdict.reason)
            self._metrics.failed(Direction.OUTBOUND, len(ids))
            return 0.0
        if not verdict.counted:
            await self._store.uncount_attempt(ids)
        self._metrics.retries.labels(Direction.OUTBOUND.value).inc()
        await self._store.finish(ids, DeliveryState.PENDING, error=verdict.error, next_attempt_at=verdict.at)
        return verdict.delay_s

    async def resume(self) -> None:
        for user_id in await self._store.pending_keys(Direction.OUTBOUND, "user_id"):
            self.wake(user_id)
