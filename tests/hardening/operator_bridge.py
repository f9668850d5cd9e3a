"""A bridge with the admin API and console on, one configured meeting and one signed webhook client, for probes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from bot.config import AdminSection, MeetingConfig, Settings
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, client_for, new_secret
from tests.support.sandbox import Control

TOKEN = "operator-token-hardening-5b0e"
CODE = "515151"


class Probe:
    """The bridge under probe, its webhook client's secret and receiver, and the sandbox meeting it bridges."""

    def __init__(self, bridge: Bridge, receiver: Receiver, secret: str, meeting: dict[str, Any]) -> None:
        self.bridge, self.receiver, self.secret, self.meeting = bridge, receiver, secret, meeting

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.bridge.http is not None
        return self.bridge.http

    @property
    def base(self) -> str:
        return self.bridge.base

    async def raw(self, request: bytes) -> tuple[int, bytes]:
        """Sends `request` as the bytes given (headers need not be UTF-8) on a fresh connection; the status and
        the whole answer."""
        return await raw_exchange(self.base, request)


async def raw_exchange(base: str, request: bytes, limit_s: float = 20.0) -> tuple[int, bytes]:
    host, _, port = base.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), limit_s)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer


@asynccontextmanager
async def operator_bridge(
    control: Control,
    info: SandboxInfo,
    tmp_path: Path,
    *,
    adjust: Callable[[Settings], Settings] | None = None,
    extra_routes: Iterable[web.RouteDef] = (),
    **meeting: Any,
) -> AsyncIterator[Probe]:
    sandbox_meeting = await control.meeting()
    secret = new_secret()
    receiver = Receiver(client_for(None, secret))
    await receiver.start()
    receiver.client = client_for(receiver.url, secret)
    config = MeetingConfig(link=sandbox_meeting["joinWebUrl"], code=CODE, name="Weekly sync", **meeting)
    settings = bridge_settings(info, tmp_path / "bridge", clients={"app": receiver.client}, meetings=[config])
    settings = settings.model_copy(update={"admin": AdminSection(token=SecretStr(TOKEN))})
    bridge = await Bridge(adjust(settings) if adjust else settings, extra_routes=extra_routes).start()
    try:
        yield Probe(bridge, receiver, secret, sandbox_meeting)
    finally:
        await bridge.stop()
        await receiver.stop()


def with_bridge(**changes: Any) -> Callable[[Settings], Settings]:
    """An adjustment of the [bridge] section."""

    def adjust(settings: Settings) -> Settings:
        return settings.model_copy(update={"bridge": settings.bridge.model_copy(update=changes)})

    return adjust
