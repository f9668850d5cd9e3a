"""Slow and idle connections (finding 2 of the security probe), with real sockets against the running bridge.

Six unauthenticated connections that sent nothing, a head slowly, or a body slowly were all still open after
120 s. Every stage is bounded now: the head (http.head_timeout_s), the body (http.body_timeout_s), a connection
with no request under way (http.idle_timeout_s), and the connections one address holds at once
(http.max_connections_per_peer). Here the limits are a fraction of a second (and four connections), and each
wait for the bridge to act is bounded by LIMIT_S: without the limits every one of these tests fails at that bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings
from bot.sandbox import SandboxInfo
from tests.hardening.operator_bridge import TOKEN, Probe, operator_bridge
from tests.support.sandbox import Control

HEAD_S, BODY_S, IDLE_S, PER_PEER = 0.5, 0.5, 2.0, 4
LIMIT_S = 10.0
"""How long a test waits for the bridge to answer or close: many times each limit, never a measurement."""
TRICKLE_S = 0.1


def tight(settings: Settings) -> Settings:
    limits = {"head_timeout_s": HEAD_S, "body_timeout_s": BODY_S, "idle_timeout_s": IDLE_S}
    http = settings.http.model_copy(update={**limits, "max_connections_per_peer": PER_PEER})
    return settings.model_copy(update={"http": http})


@pytest.fixture
async def probe(
    control: Control, info: SandboxInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Probe]:
    async with operator_bridge(control, info, tmp_path, adjust=tight) as bridge:
        yield bridge
    # Cut short, never crashed: aiohttp logs a handler's unexpected exception at ERROR.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


class Raw:
    """One TCP connection to the bridge, written to and read from by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._trickle: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, probe: Probe, source: str = "127.0.0.1") -> Raw:
        host, _, port = probe.base.removeprefix("http://").partition(":")
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def trickle(self, byte: bytes = b"a") -> None:
        """Send one byte every TRICKLE_S until the bridge closes: a slow client, never quite done."""

        async def drip() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while not self.writer.is_closing():
                    self.writer.write(byte)
                    await self.writer.drain()
                    await asyncio.sleep(TRICKLE_S)

        self._trickle = asyncio.ensure_future(drip())

    async def until_closed(self) -> bytes:
        """Everything the bridge sent until it closed the connection (bounded by LIMIT_S). Read piece by piece: a
        closed socket answers the trickle's next byte with a reset, and what arrived before it still counts."""
        received = bytearray()

        async def read_all() -> None:
            with contextlib.suppress(ConnectionResetError):
                while chunk := await self.reader.read(65536):
                    received.extend(chunk)

        try:
            await asyncio.wait_for(read_all(), LIMIT_S)
        finally:
            self.close()
        return bytes(received)

    def close(self) -> None:
        if self._trickle is not None:
            self._trickle.cancel()
        self.writer.close()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        if name.lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def body_of(answer: bytes) -> dict[str, str]:
    return dict(json.loads(answer.partition(b"\r\n\r\n")[2]))


async def connections(probe: Probe) -> int:
    """Connections the bridge's server holds right now."""
    assert probe.bridge.runner is not None and probe.bridge.runner.server is not None
    return len(probe.bridge.runner.server.connections)


async def still_serving(probe: Probe) -> None:
    async with probe.http.get(probe.base + "/healthz") as resp:
        assert resp.status == 200


async def test_a_connection_that_sends_nothing_is_closed(probe: Probe) -> None:
    silent = await Raw.open(probe)
    assert await silent.until_closed() == b""  # nothing was asked, so nothing is answered
    await still_serving(probe)


async def test_a_head_sent_slowly_is_answered_408_and_closed(probe: Probe) -> None:
    slow = await Raw.open(probe)
    slow.send(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
    slow.trickle()
    answer = await slow.until_closed()
    assert status_of(answer) == 408, answer[:200]
    await still_serving(probe)


BODIES = [
    pytest.param("/channels/webhook/app", {"Content-Type": "application/json"}, id="webhook-door"),
    pytest.param("/api/v1/meetings", {"Authorization": f"Bearer {TOKEN}"}, id="admin-api"),
    pytest.param("/console/login", {"Content-Type": "application/x-www-form-urlencoded"}, id="console-sign-in"),
]


@pytest.mark.parametrize(("path", "headers"), BODIES)
async def test_a_body_sent_slowly_is_answered_408_and_closed(probe: Probe, path: str, headers: dict[str, str]) -> None:
    slow = await Raw.open(probe)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    slow.send(f"POST {path} HTTP/1.1\r\nHost: bridge\r\n{lines}Content-Length: 5000\r\n\r\n{{".encode())
    slow.trickle(b" ")
    answer = await slow.until_closed()
    assert status_of(answer) == 408, answer[:300]
    assert body_of(answer)["error"] == "request_timeout"
    await still_serving(probe)


async def test_a_chunked_body_sent_slowly_is_answered_408_and_closed(probe: Probe) -> None:
    slow = await Raw.open(probe)
    head = "POST /channels/webhook/app HTTP/1.1\r\nHost: bridge\r\nTransfer-Encoding: chunked\r\n"
    slow.send(f"{head}Content-Type: application/json\r\n\r\n1\r\n{{\r\n".encode())
    slow.trickle(b"1\r\n \r\n")
    answer = await slow.until_closed()
    assert status_of(answer) == 408, answer[:300]


async def test_a_kept_alive_connection_is_closed_once_idle_and_serves_until_then(probe: Probe) -> None:
    kept = await Raw.open(probe)
    for _ in range(3):
        kept.send(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
        head = await asyncio.wait_for(kept.reader.readuntil(b"\r\n\r\n"), LIMIT_S)
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" not in head
        await kept.reader.readexactly(content_length(head))
        await asyncio.sleep(HEAD_S * 1.5)  # idle between requests longer than a head may take: still fine
    assert await kept.until_closed() == b""


async def test_an_address_over_its_connection_cap_is_turned_away_and_others_are_not(probe: Probe) -> None:
    held = [await Raw.open(probe) for _ in range(PER_PEER)]
    try:
        # Each held connection was admitted: it is answered.
        for conn in held[:1]:
            conn.send(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
            assert (await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), LIMIT_S)).startswith(b"HTTP/1.1 200")
        one_more = await Raw.open(probe)
        answer = await one_more.until_closed()
        assert status_of(answer) in (503, 0), answer[:200]  # 503, or closed before it could be read
        if answer:
            assert body_of(answer)["error"] == "too_many_connections" and b"Retry-After: " in answer
        # Another address is served meanwhile.
        other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
        async with other, other.get(probe.base + "/healthz") as resp:
            assert resp.status == 200
    finally:
        for conn in held:
            conn.close()

    async def freed() -> bool:
        return await connections(probe) == 0

    await bounded(freed)
    # With the held connections gone, the address is served again.
    async with aiohttp.ClientSession() as fresh, fresh.get(probe.base + "/healthz") as resp:
        assert resp.status == 200


async def test_slow_clients_leave_nothing_held_once_cut(probe: Probe) -> None:
    slow = [await Raw.open(probe) for _ in range(3)]
    slow[1].send(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
    slow[1].trickle()
    slow[2].send(b"POST /channels/webhook/app HTTP/1.1\r\nHost: bridge\r\nContent-Length: 900\r\n\r\n{")
    slow[2].trickle(b" ")
    answers = await asyncio.gather(*(conn.until_closed() for conn in slow))
    assert [status_of(a) for a in answers] == [0, 408, 408]

    async def freed() -> bool:
        return await connections(probe) == 0

    await bounded(freed)


async def bounded(check: Callable[[], Awaitable[bool]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT_S
    while not await check():
        assert loop.time() < deadline, "the bridge still holds the connections"
        await asyncio.sleep(0.05)


def test_the_limits_are_sane_defaults() -> None:
    defaults = Settings().http
    assert defaults.head_timeout_s == 10 and defaults.body_timeout_s == 30
    assert defaults.idle_timeout_s == 75 and defaults.max_connections_per_peer == 256
