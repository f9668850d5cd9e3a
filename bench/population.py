"""Populating a sandbox and a bridge for the outbound, fan-out and scale benchmarks: meetings, Teams posters,
webhook users joined to calls, and what the scenarios read back (session counts, outbox depth, event arrivals)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web

from .processes import CHAT_EVENT_TYPES, BridgeConfig, BridgeProcess, SandboxProcess, Sink, WebhookSender, new_secret

CLIENT = "bench"
SESSIONS_METRIC = re.compile(r'^bridge_sessions\{state="([a-z_]+)"\} ([0-9.e+]+)$', re.MULTILINE)
OUTBOX_METRIC = re.compile(r'^bridge_outbox_depth\{direction="[a-z]+"\} ([0-9.e+]+)$', re.MULTILINE)


@dataclass
class Room:
    """One Teams meeting on the sandbox, bridged under `code`, with a Teams user who posts in its chat."""

    meeting: dict[str, Any]
    code: str
    poster: str = ""

    @property
    def id(self) -> str:
        return str(self.meeting["id"])

    def config(self) -> dict[str, Any]:
        return {"link": self.meeting["joinWebUrl"], "code": self.code, "name": f"Bench {self.code}"}


async def gather_limited(coros: Iterable[Any], concurrency: int) -> list[Any]:
    """Await every coroutine, at most `concurrency` at a time, results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def rooms(sandbox: SandboxProcess, count: int, *, first_code: int = 100000, poster: bool = True) -> list[Room]:
    """`count` started meetings, each with a Teams user (the poster) in its call when `poster`."""

    async def one(index: int) -> Room:
        room = Room(await sandbox.meeting(f"Bench meeting {index}"), str(first_code + index))
        if poster:
            user = await sandbox.control("POST", f"/meetings/{room.id}/teams-users", {"displayName": f"Teams {index}"})
            room.poster = str(user["id"])
        return room

    return await gather_limited((one(i) for i in range(count)), 16)


async def teams_post(sandbox: SandboxProcess, room: Room, text: str) -> tuple[str, float]:
    """A Teams user posts in the meeting chat: the ACS message id and the sandbox's createdOn as epoch seconds."""
    body = {"from": room.poster, "html": f"<p>{text}</p>"}
    message = await sandbox.control("POST", f"/meetings/{room.id}/messages", body)
    return str(message["id"]), datetime.fromisoformat(message["createdOn"]).timestamp()


def webhook_client(sink: Sink, *, rate_per_second: float = 20.0) -> dict[str, Any]:
    return {"secrets": [sink.secret], "callback_url": sink.url, "rate_per_second": rate_per_second}


async def new_sink() -> Sink:
    sink = Sink(new_secret())
    await sink.start()
    return sink


async def send_retrying(sender: WebhookSender, event: dict[str, Any], *, attempts: int = 20) -> int:
    """Send one event, honouring 429 and 503 with Retry-After the way a well-behaved client does."""
    status = 0
    for _ in range(attempts):
        try:
            status, _, headers = await sender.send(event, timeout_s=60.0)
        except (aiohttp.ClientError, TimeoutError):
            status, headers = 0, {}
        if status not in (0, 429, 503):
            return status
        await asyncio.sleep(float(headers.get("Retry-After", "1")))
    return status


async def join_all(sender: WebhookSender, users: Sequence[tuple[str, str]], *, concurrency: int = 32) -> dict[int, int]:
    """Each (user id, meeting code) sends a join; the answers' statuses counted."""
    statuses = await gather_limited(
        (
            send_retrying(sender, {"type": "join", "user": {"id": user, "displayName": user}, "meeting": code})
            for user, code in users
        ),
        concurrency,
    )
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


async def session_counts(bridge: BridgeProcess) -> dict[str, float]:
    """Sessions by state, from the bridge's Prometheus metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{bridge.base}/metrics") as resp:
        text = await resp.text()
    return {state: float(value) for state, value in SESSIONS_METRIC.findall(text)}


async def outbox_depth(bridge: BridgeProcess) -> float:
    """Pending or held deliveries, both directions, from the bridge's Prometheus metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{bridge.base}/metrics") as resp:
        text = await resp.text()
    return sum(float(v) for v in OUTBOX_METRIC.findall(text))


async def wait_in_call(bridge: BridgeProcess, expected: int, timeout_s: float) -> float:
    """Seconds until `expected` sessions are in the call; raises with the counts seen when it takes too long."""
    started = time.monotonic()
    counts: dict[str, float] = {}
    while time.monotonic() - started < timeout_s:
        counts = await session_counts(bridge)
        if counts.get("in_call", 0) >= expected:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"only {counts} sessions after {timeout_s:.0f} s; expected {expected} in the call")


async def start_sandbox(workdir: Path, name: str, *, limits: bool = True) -> tuple[SandboxProcess, Path]:
    """A sandbox process in workdir/name/sandbox; the folder workdir/name is for the bridge beside it."""
    base = workdir / name
    sandbox = SandboxProcess(base / "sandbox", limits=limits)
    await sandbox.start()
    return sandbox, base


def bridge_config(
    base: Path, sink: Sink, rooms_: Sequence[Room], *, rate_per_second: float = 20.0, **kwargs: Any
) -> BridgeConfig:
    """The bridge's settings: one webhook client (CLIENT) calling back to `sink`, the rooms as configured meetings."""
    return BridgeConfig(
        state_dir=base / "bridge",
        clients={CLIENT: webhook_client(sink, rate_per_second=rate_per_second)},
        meetings=[r.config() for r in rooms_],
        **kwargs,
    )


class EventProbe:
    """A bare Event Grid receiver: when each chat message's event arrives, with no bridge behind it (a baseline)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._runner: aiohttp.web.AppRunner | None = None
        self.url = ""

    async def start(self, sandbox: SandboxProcess) -> None:
        app = aiohttp.web.Application()
        app.router.add_post("/events", self._receive)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/events"
        body = {"endpoint": self.url, "eventTypes": [CHAT_EVENT_TYPES[0]], "schema": "EventGrid"}
        await sandbox.control("POST", "/event-subscriptions", body)

    async def _receive(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        now = time.time()
        events = await request.json()
        for event in events:
            data = event.get("data") or {}
            if event.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent":
                return aiohttp.web.json_response({"validationResponse": data.get("validationCode")})
            if "messageId" in data:
                self.arrived.setdefault(str(data["messageId"]), now)
        return aiohttp.web.json_response({"received": len(events)})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
