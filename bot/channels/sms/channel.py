"""The SMS channel: meeting messages shaped for phones (prefixes, bursts combined, segment caps) and budgeted."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ...address import Address
from ...commands import reply
from ...config import SmsSection
from ...errors import ThrottledError, TransientError
from ...models import Delivery, ExternalUser, Meeting
from ...phones import mask
from ...relay.pacing import Pacer
from ...sms_text import combine, fit, segments
from ...store import Store, utcnow
from .base import SmsGateway
from .quiet import QuietHours

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
# ACS accepts a repeatabilityFirstSent up to 5 minutes old; keep a margin.
REPEAT_WINDOW = timedelta(minutes=4)
# Texts one number may send: ACS allows 200 a minute per number. Twilio queues a number's texts on its side.
SEND_LIMITS: dict[str, tuple[tuple[int, float], ...]] = {"acs": ((200, 60.0),)}


def compose(deliveries: list[Delivery]) -> str:
    """One text for a burst: a sender's consecutive messages share one prefix; notices stand on their own line."""
    lines: list[str] = []
    burst: list[tuple[str, str]] = []
    for delivery in deliveries:
        body = delivery.body
        text = str(body.get("text", ""))
        sender_info = body.get("from")
        sender = str(sender_info.get("displayName", "")) if isinstance(sender_info, dict) else ""
        if delivery.kind == "notice":
            if burst:
                lines.append(combine(burst))
                burst = []
            lines.append(text)
        elif delivery.kind == "edit":
            burst.append((sender, f"(edited) {text}"))
        elif delivery.kind == "delete":
            burst.append((sender, "(deleted a message)"))
        else:
            burst.append((sender, text))
    if burst:
        lines.append(combine(burst))
    return "\n".join(line for line in lines if line)


def part_key(head: Delivery, index: int, epoch: str = "") -> str:
    """Stable per part, so a retry of a split text lets the provider drop the parts it already sent."""
    if index == 0 and not epoch:
        return head.id
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{head.id}/{index}/{epoch}"))


class SendGate:
    """Texts from the bridge's number go out one at a time, paced to the number's limit and all held while the
    provider asks to wait (429 Retry-After). Without it every user's dispatcher tried on its own: a busy number
    answered most tries 429, and a delivery could be tried dozens of times in a minute, each try a chance to fail."""

    def __init__(
        self, limits: tuple[tuple[int, float], ...], sent_since: Callable[[datetime], Awaitable[list[datetime]]]
    ) -> None:
        self._pacer = Pacer(limits) if limits else None
        self._horizon = max((window for _, window in limits), default=0.0)
        self._sent_since = sent_since
        self._loaded = False
        self._turn = asyncio.Lock()  # first come, first served: every user gets their turn
        self._held_until = 0.0

    async def wait_turn(self, count: int = 1) -> None:
        """Wait until `count` texts may go out back to back, and count them sent."""
        async with self._turn:
            if not self._loaded and self._pacer is not None:
                # The provider still counts the texts of the last minute after a restart, so the gate does too:
                # started blind, it provoked a minute of 429s that held every user's texts.
                now, wall = time.monotonic(), utcnow()
                for at in await self._sent_since(wall - timedelta(seconds=self._horizon)):
                    self._pacer.record(now - (wall - at).total_seconds())
            self._loaded = True
            while True:
                now = time.monotonic()
                wait = max(self._held_until - now, self._pacer.delay(now, count) if self._pacer is not None else 0.0)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self._pacer is not None:
                for _ in range(count):
                    self._pacer.record(time.monotonic())

    def hold(self, seconds: float | None) -> None:
        self._held_until = max(self._held_until, time.monotonic() + (seconds if seconds is not None else 1.0))


class SmsChannel:
    name = "sms"

    def __init__(self, gateway: SmsGateway, store: Store, settings: SmsSection) -> None:
        self._gateway = gateway
        self._store = store
        self._settings = settings
        self.batch_window_s = settings.burst_window_s
        self._told_budget: dict[str, float] = {}
        self._gate = SendGate(SEND_LIMITS.get(gateway.name, ()), store.sms_sent_since)
        self._quiet = QuietHours(store, settings)

    def _parts(self, meeting: Meeting | None, deliveries: list[Delivery]) -> list[str]:
        cap = (meeting.sms_segment_cap if meeting is not None else None) or self._settings.segment_cap
        return [p for p in fit(compose(deliveries), cap, self._settings.cap_policy) if p.strip()]

    async def turn(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> None:
        if await self._quiet.check(user, deliveries) is not None:
            return  # nothing will be sent: deliver says why
        # Every part's turn is taken before the try is counted. A later part that waited for its turn after the
        # first went out kept the try open as long as the queue was, and a crash meanwhile counted it as failed.
        await self._gate.wait_turn(len(self._parts(meeting, deliveries)))

    async def deliver(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> str | None:
        held = await self._quiet.check(user, deliveries)
        if held is not None:
            raise held
        head = deliveries[0]
        number = Address.of(user).handle
        parts = self._parts(meeting, deliveries)
        if not parts:
            return None
        needed = sum(segments(p) for p in parts)
        if not all(d.body.get("always") for d in deliveries):
            await self._check_budget(user, number, needed, head)
        now = utcnow()
        # ACS keeps the first-sent time with the repeatability id and refuses (400) a retry that gives another one.
        # The stored time of the first try is the one every later try reads, so the first try must give it too:
        # the dispatcher read these rows before recording this try, and this call's clock can be in the next second.
        stored = await self._store.get_delivery(head.id)
        first_sent = (stored.first_attempt_at if stored is not None else None) or head.first_attempt_at or now
        late = now - first_sent > REPEAT_WINDOW
        if late:
            # Providers drop repeats only within minutes of the first try; past that a retry is a new text
            # (it may double one whose answer was lost, which nothing can rule out any more).
            log.warning("retrying a text to %s past the provider's repeat window", mask(number))
            first_sent = now
        first: str | None = None
        for index, part in enumerate(parts):
            key = part_key(head, index) if not late else part_key(head, index, now.isoformat())
            try:
                provider_id = await self._gateway.send(number, part, key=key, first_sent=first_sent)
            except ThrottledError as exc:
                self._gate.hold(exc.retry_after)
                if index == 0:
                    raise
                # Part of the text went out: a retry must re-form this very batch, so this try counts.
                raise TransientError(str(exc), exc.retry_after) from exc
            first = first or provider_id
            await self._store.add_sms_usage(user.id, segments(part))
        log.debug("texted %s: %d part(s), %d segment(s)", mask(number), len(parts), needed)
        return first

    async def _check_budget(self, user: ExternalUser, number: str, needed: int, head: Delivery) -> None:
        now = utcnow()
        used, oldest = await self._store.sms_usage(user.id, now - HOUR)
        limit = self._settings.budget_segments_per_hour
        if used + needed <= limit:
            return
        wait = ((oldest + HOUR) - now).total_seconds() if oldest is not None else HOUR.total_seconds()
        window_start = (oldest or now).timestamp()
        if self._told_budget.get(user.id) != window_start:
            # Told once per window; the notice itself is outside the budget.
            self._told_budget[user.id] = window_start
            text = reply("budget", self._settings.texts, **self._settings.wording())
            try:
                await self._gateway.send(number, text, key=part_key(head, 99), first_sent=head.created_at or now)
            except TransientError:
                pass
            log.info("SMS budget reached for %s; holding texts %.0f s", mask(number), wait)
        raise TransientError("the number's hourly SMS budget is used up", retry_after=max(1.0, wait))
