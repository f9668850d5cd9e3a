"""Runs the real bridge app over loopback against the test sandbox, with a signed webhook client and its receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from bot.app import create_app
from bot.channels.webhook import sign, verify
from bot.config import MeetingConfig, Settings, WebhookClient, load_settings
from bot.embedded import on_sandbox
from bot.relay.runtime import RELAY, Relay
from bot.sandbox import SandboxInfo
from bot.server import BoundedRunner, BoundedSite
from bot.store import STORE, Store, StoreUrl


async def wait_for(check: Callable[[], Awaitable[Any]], limit_s: float = 20.0, what: str = "condition") -> Any:
    """Poll until check() returns something truthy; bounded, never a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Receiver:
    """The webhook client's callback endpoint: verifies signatures like a real client and records payloads."""

    def __init__(self, client: WebhookClient) -> None:
        self.client = client
        self.received: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.fail_next = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/callbacks", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/callbacks"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if verify(self.client, body, request.headers) is not None:
            return web.Response(status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        self.ids.append(request.headers["webhook-id"])
        self.received.append(json.loads(body))
        return web.json_response({"ok": True})

    def of(self, kind: str, user: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.received if r["type"] == kind and (user is None or r["user"]["id"] == user)]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def listening_socket() -> socket.socket:
    """A loopback socket already bound to a free port: its URL is known before the bridge's settings are final
    (a Twilio status callback URL names the port), and nothing can take the port in between."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


class Bridge:
    """One bridge process's worth of app, started in this event loop on an ephemeral port (or on `sock`)."""

    def __init__(
        self,
        settings: Settings,
        sock: socket.socket | None = None,
        extra_routes: Iterable[web.RouteDef] = (),
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.extra_routes = list(extra_routes)
        """What `run` adds beside the bridge's own routes (the embedded demo's inbox)."""
        self.runner: web.AppRunner | None = None
        self.base = ""
        self.http: aiohttp.ClientSession | None = None

    @property
    def app(self) -> web.Application:
        assert self.runner is not None
        return self.runner.app

    @property
    def relay(self) -> Relay:
        return self.app[RELAY]

    @property
    def store(self) -> Store:
        return self.app[STORE]

    async def start(self) -> Bridge:
        app = create_app(self.settings, extra_routes=self.extra_routes)
        runner = self.runner = BoundedRunner(app, self.settings.http, access_log=None)  # served as `run` serves it
        await runner.setup()
        await BoundedSite(runner, "127.0.0.1", 0, sock=self.sock).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.http = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def send(
        self, client: str, secret: str, event: dict[str, Any], webhook_id: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        assert self.http is not None
        payload = json.dumps(event)
        headers = sign(secret, webhook_id or f"msg_{uuid.uuid4().hex}", payload)
        async with self.http.post(f"{self.base}/channels/webhook/{client}", data=payload, headers=headers) as resp:
            return resp.status, await resp.json()


def bridge_settings(
    info: SandboxInfo,
    state_dir: Path,
    *,
    clients: dict[str, WebhookClient],
    meetings: list[MeetingConfig],
    relay: dict[str, Any] | None = None,
    sms: dict[str, Any] | None = None,
    store_url: StoreUrl | None = None,
) -> Settings:
    """Settings for a bridge on the sandbox; `sms` overrides SMS settings before the sandbox fills in the rest
    (gateway "twilio" is kept: twilio_on_sandbox then supplies its account); `store_url` another store than
    state_dir's SQLite file."""
    base = load_settings(None, environ={})
    relay_settings = base.relay.model_copy(update={"poll_active_s": 0.2, "poll_idle_s": 0.5, **(relay or {})})
    settings = base.model_copy(
        update={
            "bridge": base.bridge.model_copy(update={"state_dir": state_dir, "port": 0, "store_url": store_url}),
            "webhook_clients": clients,
            "meetings": meetings,
            "relay": relay_settings,
            "sms": base.sms.model_copy(update=sms or {}),
        }
    )
    return on_sandbox(settings, info)


def client_for(receiver_url: str | None, secret: str) -> WebhookClient:
    return WebhookClient(secrets=[SecretStr(secret)], callback_url=receiver_url)


@asynccontextmanager
async def bridge_for(
    info: SandboxInfo,
    tmp_path: Path,
    meeting: MeetingConfig,
    *,
    adjust: Callable[[Settings], Settings] | None = None,
    **relay: Any,
) -> AsyncIterator[tuple[Bridge, Receiver, str]]:
    """A bridge with one meeting and one signed webhook client "app" whose receiver records the callbacks."""
    secret = new_secret()
    receiver = Receiver(client_for(None, secret))
    await receiver.start()
    receiver.client = client_for(receiver.url, secret)
    settings = bridge_settings(info, tmp_path, clients={"app": receiver.client}, meetings=[meeting], relay=relay)
    bridge = await Bridge(adjust(settings) if adjust else settings).start()
    try:
        yield bridge, receiver, secret
    finally:
        await bridge.stop()
        await receiver.stop()
