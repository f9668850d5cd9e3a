"""Event Grid push delivery: the validation handshake, both schemas, and one retrying worker per subscription."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from .bus import SandboxEvent
from .eventgrid_faults import DeliveryFaults
from .util import JsonDict, iso, new_guid, now

log = logging.getLogger(__name__)

Schema = Literal["EventGrid", "CloudEvents"]
Outcome = Literal["delivered", "drop", "retry"]
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
CLOUDEVENTS_ORIGIN = "eventgrid.azure.net"
# Event Grid gives up on an event at once when the endpoint answers one of these.
DROP_STATUSES = frozenset({400, 401, 403, 413})
# Event Grid retries for up to 24 h; the sandbox keeps the same shape on a scale tests can wait for.
BACKOFF_START_S = 0.2
BACKOFF_CAP_S = 3.0
ATTEMPT_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0
DEFAULT_MAX_ATTEMPTS = 8
QUEUE_LIMIT = 10_000


def safe_url(url: str) -> str:
    """The endpoint without its query, which often carries a secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    lost: int = 0
    """Events the delivery faults lost before any try."""
    duplicated: int = 0
    """Events the delivery faults delivered a second time."""


@dataclass(eq=False)
class Subscription:
    id: str
    name: str
    endpoint: str
    event_types: tuple[str, ...]
    schema: Schema
    max_events_per_batch: int = 1
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    created: float = field(default_factory=now)
    queue: asyncio.Queue[SandboxEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    in_flight: int = 0
    faults: DeliveryFaults | None = None
    copies_due: int = 0
    """Duplicated events whose copy is not queued yet."""

    def wants(self, event: SandboxEvent) -> bool:
        return not self.event_types or event.type in self.event_types

    def offer(self, event: SandboxEvent) -> None:
        faults = self.faults
        if faults is not None and faults.matches(event):
            if faults.random.random() < faults.lose:
                self.stats.lost += 1
                return
            if faults.random.random() < faults.duplicate:
                self.stats.duplicated += 1
                self.copies_due += 1
                delay = faults.random.uniform(0, faults.delay_s)
                asyncio.get_running_loop().call_later(delay, self._copy, event)
        self._enqueue(event)

    def _copy(self, event: SandboxEvent) -> None:
        self.copies_due -= 1
        self._enqueue(event)

    def _enqueue(self, event: SandboxEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.stats.failed += 1
            log.warning("event subscription %s is %d events behind; dropped %s", self.name, QUEUE_LIMIT, event.type)

    def to_json(self) -> JsonDict:
        stats = self.stats
        return {
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "eventTypes": list(self.event_types),
            "schema": self.schema,
            "maxEventsPerBatch": self.max_events_per_batch,
            "maxDeliveryAttempts": self.max_attempts,
            "createdAt": iso(self.created),
            "faults": self.faults.to_json() if self.faults is not None else None,
            "stats": {
                "delivered": stats.delivered,
                "failed": stats.failed,
                "dropped": stats.dropped,
                "pending": self.queue.qsize() + self.in_flight + self.copies_due,
                "attempts": stats.attempts,
                "lastStatus": stats.last_status,
                "lastError": stats.last_error,
                "lost": stats.lost,
                "duplicated": stats.duplicated,
            },
        }


class HandshakeFailed(Exception):
    """The endpoint did not prove that it wants the events."""


def eventgrid_json(event: SandboxEvent, topic: str) -> JsonDict:
    return {
        "id": event.id,
        "topic": topic,
        "subject": event.subject,
        "data": event.data,
        "eventType": event.type,
        "dataVersion": event.data_version,
        "metadataVersion": "1",
        "eventTime": iso(event.time),
    }


def cloudevent_json(event: SandboxEvent, topic: str) -> JsonDict:
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": topic,
        "subject": event.subject,
        "type": event.type,
        "time": iso(event.time),
        "data": event.data,
    }


def encode(sub: Subscription, events: list[SandboxEvent], topic: str) -> tuple[bytes, str]:
    """The body and content type Event Grid posts: always an array for its own schema, one CloudEvent unless batched."""
    if sub.schema == "EventGrid":
        body: object = [eventgrid_json(e, topic) for e in events]
        content_type = "application/json; charset=utf-8"
    elif sub.max_events_per_batch == 1:
        body = cloudevent_json(events[0], topic)
        content_type = "application/cloudevents+json; charset=utf-8"
    else:
        body = [cloudevent_json(e, topic) for e in events]
        content_type = "application/cloudevents-batch+json; charset=utf-8"
    return json.dumps(body).encode("utf-8"), content_type


class EventGrid:
    """The subscriptions, the one HTTP session that delivers to them, and their worker tasks."""

    def __init__(self, topic: str, ssl_context: Callable[[], ssl.SSLContext]) -> None:
        self.topic = topic
        self._ssl_context = ssl_context
        self.subscriptions: dict[str, Subscription] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Event Grid delivery has not been started")
        return self._session

    def on_event(self, event: SandboxEvent) -> None:
        """Bus listener: only enqueues, so the model never waits for a webhook."""
        for sub in self.subscriptions.values():
            if sub.wants(event):
                sub.offer(event)

    def add(self, sub: Subscription) -> None:
        self.subscriptions[sub.id] = sub
        task = asyncio.create_task(self._run(sub), name=f"eventgrid-{sub.name}")
        self._workers[sub.id] = task
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def remove(self, sub_id: str) -> bool:
        sub = self.subscriptions.pop(sub_id, None)
        task = self._workers.pop(sub_id, None)
        if task is not None:
            task.cancel()
        return sub is not None

    def clear(self) -> None:
        for sub_id in list(self.subscriptions):
            self.remove(sub_id)

    async def close(self) -> None:
        self.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Event Grid delivery worker %s died", task.get_name(), exc_info=task.exception())

    @asynccontextmanager
    async def _request(
        self, method: str, sub: Subscription, timeout_s: float, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        # Event Grid does not follow redirects: a 3xx is a failed delivery.
        async with self.session.request(
            method,
            sub.endpoint,
            ssl=self._ssl_context(),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            **kwargs,
        ) as resp:
            yield resp

    # the handshake -----------------------------------------------------------------------------------

    async def handshake(self, sub: Subscription) -> None:
        try:
            if sub.schema == "CloudEvents":
                await self._cloudevents_handshake(sub)
            else:
                await self._eventgrid_handshake(sub)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise HandshakeFailed(f"the request failed: {type(exc).__name__} {exc}".strip()) from exc

    async def _eventgrid_handshake(self, sub: Subscription) -> None:
        code = new_guid()
        event = {
            "id": new_guid(),
            "topic": self.topic,
            "subject": "",
            "data": {"validationCode": code},
            "eventType": VALIDATION_EVENT,
            "eventTime": iso(now()),
            "metadataVersion": "1",
            "dataVersion": "2",
        }
        headers = self._headers(sub, "SubscriptionValidation", 0) | {"aeg-data-version": "2"}
        headers["Content-Type"] = "application/json; charset=utf-8"
        body = json.dumps([event]).encode("utf-8")
        async with self._request("POST", sub, HANDSHAKE_TIMEOUT_S, data=body, headers=headers) as resp:
            text = await resp.text(errors="replace")
            if resp.status != 200:
                raise HandshakeFailed(f"the endpoint answered HTTP {resp.status}, expected 200")
        try:
            answer = json.loads(text)
        except ValueError as exc:
            raise HandshakeFailed('the answer is not JSON {"validationResponse": "<validationCode>"}') from exc
        if not isinstance(answer, dict) or answer.get("validationResponse") != code:
            raise HandshakeFailed("validationResponse does not echo the validationCode that was sent")

    async def _cloudevents_handshake(self, sub: Subscription) -> None:
        headers = {"WebHook-Request-Origin": CLOUDEVENTS_ORIGIN, "WebHook-Request-Rate": "120"}
        async with self._request("OPTIONS", sub, HANDSHAKE_TIMEOUT_S, headers=headers) as resp:
            if resp.status != 200:
                raise HandshakeFailed(f"the OPTIONS request was answered HTTP {resp.status}, expected 200")
            allowed = [v.strip() for v in resp.headers.get("WebHook-Allowed-Origin", "").split(",")]
        if CLOUDEVENTS_ORIGIN not in allowed and "*" not in allowed:
            raise HandshakeFailed(f"the answer lacks WebHook-Allowed-Origin: {CLOUDEVENTS_ORIGIN}")

    # delivery ----------------------------------------------------------------------------------------

    def _headers(self, sub: Subscription, kind: str, delivery_count: int) -> dict[str, str]:
        headers = {
            "aeg-event-type": kind,
            "aeg-subscription-name": sub.name.upper(),
            "aeg-delivery-count": str(delivery_count),
        }
        if sub.schema == "EventGrid":
            headers |= {"aeg-data-version": "1.0", "aeg-metadata-version": "1"}
        return headers

    async def _run(self, sub: Subscription) -> None:
        while True:
            batch = [await sub.queue.get()]
            while len(batch) < sub.max_events_per_batch and not sub.queue.empty():
                batch.append(sub.queue.get_nowait())
            sub.in_flight = len(batch)
            try:
                await self._deliver(sub, batch)
            finally:
                sub.in_flight = 0

    async def _deliver(self, sub: Subscription, batch: list[SandboxEvent]) -> None:
        delay = BACKOFF_START_S
        for attempt in range(sub.max_attempts):
            outcome = await self._attempt(sub, batch, attempt)
            if outcome == "delivered":
                sub.stats.delivered += len(batch)
                return
            if outcome == "drop":
                sub.stats.dropped += len(batch)
                log.warning("%s refused %d event(s) with HTTP %s: dropped", sub.name, len(batch), sub.stats.last_status)
                return
            if attempt + 1 < sub.max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_S)
        sub.stats.failed += len(batch)
        log.warning("%s: gave up on %d event(s) after %d attempts", sub.name, len(batch), sub.max_attempts)

    async def _attempt(self, sub: Subscription, batch: list[SandboxEvent], attempt: int) -> Outcome:
        body, content_type = encode(sub, batch, self.topic)
        headers = self._headers(sub, "Notification", attempt) | {"Content-Type": content_type}
        sub.stats.attempts += 1
        try:
            async with self._request("POST", sub, ATTEMPT_TIMEOUT_S, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            sub.stats.last_status = None
            sub.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.info("%s: delivery to %s failed: %s", sub.name, safe_url(sub.endpoint), sub.stats.last_error)
            return "retry"
        sub.stats.last_status = status
        if 200 <= status < 300:
            sub.stats.last_error = None
            return "delivered"
        sub.stats.last_error = f"HTTP {status}"
        return "drop" if status in DROP_STATUSES else "retry"
