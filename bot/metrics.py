"""Prometheus metrics: counters the relay moves as it works, gauges read from the store at each scrape."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .models import Direction, SessionCondition, SessionState
from .store import Store, utcnow

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """One registry per app (no process-wide globals), so tests and several apps in one process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.relayed = Counter(
            "bridge_messages_relayed",
            "Messages relayed, by direction and channel",
            ["direction", "channel"],
            registry=r,
        )
        self.deliveries = Counter(
            "bridge_deliveries_final", "Deliveries that reached a final state", ["direction", "state"], registry=r
        )
        self.retries = Counter(
            "bridge_delivery_retries", "Delivery attempts scheduled again", ["direction"], registry=r
        )
        self.latency = Histogram(
            "bridge_relay_latency_seconds",
            "From acceptance to delivery",
            ["direction"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "bridge_refused",
            "Messages refused and the sender told (busy: a full inbound backlog; backlog_full: a full outbound one)",
            ["reason", "channel"],
            registry=r,
        )
        self.throttled = Counter("bridge_acs_throttled", "ACS answers of 429", ["operation"], registry=r)
        self.auth_failures = Counter(
            "bridge_auth_failures", "Wrong operator tokens, by door (api, console)", ["door"], registry=r
        )
        self.auth_throttled = Counter(
            "bridge_auth_throttled", "Token attempts answered 429 while their peer waits, by door", ["door"], registry=r
        )
        self.token_refreshes = Counter("bridge_token_refreshes", "ACS access tokens issued", registry=r)
        self.sessions = Gauge("bridge_sessions", "Sessions by state", ["state"], registry=r)
        self.outbox = Gauge("bridge_outbox_depth", "Pending or held deliveries", ["direction"], registry=r)
        self.chat_refused = Gauge(
            "bridge_chat_refused",
            "Sessions in the call whose meeting chat refuses them (HTTP 403 though the call leg is connected)",
            ["meeting"],
            registry=r,
        )
        self._refused_meetings: set[str] = set()

    def delivered(self, direction: Direction, channel: str, created_at: datetime | None, count: int = 1) -> None:
        self.relayed.labels(direction.value, channel).inc(count)
        self.deliveries.labels(direction.value, "delivered").inc(count)
        if created_at is not None:
            self.latency.labels(direction.value).observe(max(0.0, (utcnow() - created_at).total_seconds()))

    def failed(self, direction: Direction, count: int = 1) -> None:
        self.deliveries.labels(direction.value, "failed").inc(count)

    async def refresh(self, store: Store) -> None:
        counts = await store.session_counts()
        for state in SessionState:
            self.sessions.labels(state.value).set(counts.get(state.value, 0))
        depth = await store.outbox_depth()
        for direction in Direction:
            self.outbox.labels(direction.value).set(depth.get(direction.value, 0))
        refused = await store.condition_counts(SessionCondition.CHAT_REFUSED)
        for meeting_id in self._refused_meetings - set(refused):
            self.chat_refused.labels(meeting_id).set(0)  # it cleared: shown at 0, so a graph sees it end
        for meeting_id, count in refused.items():
            self.chat_refused.labels(meeting_id).set(count)
        self._refused_meetings |= set(refused)

    def exposition(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


class TokenIssuer(Protocol):
    async def create_identity(self) -> str: ...
    async def issue_token(self, identity_id: str) -> tuple[str, int]: ...
    async def delete_identity(self, identity_id: str) -> None: ...


class CountingTokens:
    """The identity API with every token issue counted: the relay's and the chat credentials' refreshes alike."""

    def __init__(self, inner: TokenIssuer, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def create_identity(self) -> str:
        return await self._inner.create_identity()

    async def issue_token(self, identity_id: str) -> tuple[str, int]:
        self._metrics.token_refreshes.inc()
        return await self._inner.issue_token(identity_id)

    async def delete_identity(self, identity_id: str) -> None:
        await self._inner.delete_identity(identity_id)


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
