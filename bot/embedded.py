"""Running on the embedded sandbox: settings pointed at it, the demo on it, its Event Grid and Twilio wired to the
bridge once the bridge listens."""

from __future__ import annotations

import logging
import secrets
import ssl
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from .channels.chat_events import CHAT_EVENTS
from .channels.chat_events import PATH as CHAT_EVENTS_PATH
from .channels.sms.acs import PATH as SMS_EVENTS_PATH
from .channels.sms.twilio import INBOUND_PATH as TWILIO_INBOUND_PATH
from .config import Settings
from .demo import DEMO_CLIENT, Demo, DemoInbox, with_demo
from .sandbox import Sandbox, SandboxInfo
from .store_url import StoreUrl

log = logging.getLogger(__name__)


def on_sandbox(settings: Settings, info: SandboxInfo) -> Settings:
    """The settings pointed at an embedded sandbox: its ACS resource, its CA and its Graph."""
    acs = settings.acs.model_copy(
        update={"connection_string": SecretStr(info.connection_string), "ca_file": info.ca_file}
    )
    graph = settings.graph.model_copy(
        update={
            "tenant_id": info.tenant_id,
            "client_id": info.client_id,
            "client_secret": SecretStr(info.client_secret),
            "authority": info.authority_host,
            "base_url": info.graph_base_url,
            "ca_file": info.ca_file,
        }
    )
    calls = settings.calls.model_copy(update={"sandbox_endpoint": info.endpoint})
    sms = settings.sms
    if sms.gateway == "none":
        sms = sms.model_copy(update={"gateway": "acs", "number": info.sms_number})
    if sms.gateway == "acs" and sms.number is None:
        sms = sms.model_copy(update={"number": info.sms_number})
    if sms.gateway == "acs" and sms.events_secret is None:
        sms = sms.model_copy(update={"events_secret": SecretStr(secrets.token_urlsafe(24))})
    return settings.model_copy(update={"acs": acs, "graph": graph, "calls": calls, "sms": sms})


async def _sandbox_control(info: SandboxInfo, method: str, path: str, body: Any = None) -> Any:
    ctx = ssl.create_default_context(cafile=info.ca_file)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http,
        http.request(method, f"{info.control_url}{path}", json=body) as resp,
    ):
        resp.raise_for_status()
        return await resp.json() if resp.content_type == "application/json" else None


async def twilio_on_sandbox(settings: Settings, info: SandboxInfo) -> Settings:
    """The Twilio settings of the sandbox's own Twilio stand-in, when the SMS gateway is twilio."""
    if settings.sms.gateway != "twilio":
        return settings
    account = await _sandbox_control(info, "GET", "/twilio")
    twilio = settings.twilio.model_copy(
        update={
            "account_sid": account["accountSid"],
            "auth_token": SecretStr(account["authToken"]),
            "base_url": account["baseUrl"],
            "ca_file": info.ca_file,
        }
    )
    sms = settings.sms.model_copy(update={"number": account["number"]})
    return settings.model_copy(update={"twilio": twilio, "sms": sms})


async def point_sandbox_twilio(info: SandboxInfo, inbound_url: str) -> None:
    """Like setting a Twilio number's messaging webhook: texts to it are posted to the bridge."""
    await _sandbox_control(info, "PUT", "/twilio", {"smsUrl": inbound_url})


SMS_EVENT_TYPES = ("Microsoft.Communication.SMSReceived", "Microsoft.Communication.SMSDeliveryReportReceived")


async def subscribe_sandbox_events(info: SandboxInfo, door: str, secret: str, event_types: tuple[str, ...]) -> None:
    """Have the sandbox push events to one of the bridge's doors, as an Event Grid subscription on ACS would."""
    body = {"endpoint": f"{door}?code={secret}", "eventTypes": list(event_types), "schema": "EventGrid"}
    ctx = ssl.create_default_context(cafile=info.ca_file)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http,
        http.post(f"{info.control_url}/event-subscriptions", json=body) as resp,
    ):
        if resp.status != 201:
            log.warning("sandbox event subscription failed: %s", await resp.text())


class EmbeddedSandbox:
    """The sandbox started inside the bridge's process, with the demo on it, for `run` when no ACS resource is
    configured: `start` gives the settings the bridge runs with, `routes` the demo's inbox, and `connect`, once the
    bridge listens, points the sandbox's Event Grid subscriptions and Twilio number at it."""

    def __init__(self, settings: Settings, base_url: str) -> None:
        self._settings = settings
        self._base = base_url
        self._dir = settings.bridge.state_dir / "sandbox"
        self._sandbox = Sandbox(port=settings.sandbox.port, state_dir=self._dir)
        self.info: SandboxInfo | None = None
        self.demo: Demo | None = None
        self.admin_token: str | None = None
        """The operator token generated for this run, when none is configured; shown in the banner."""
        self._inbox: DemoInbox | None = None

    async def start(self) -> Settings:
        """Start the sandbox; the settings pointed at it, with the demo meeting and client when enabled."""
        info = self.info = await self._sandbox.start()
        settings = await twilio_on_sandbox(on_sandbox(self._settings, info), info)
        # The embedded sandbox keeps identities and meetings in memory only: a store that outlived them would point at
        # nothing, so the bridge starts afresh with it, in a file of its own.
        store_file = self._dir / "bridge.db"
        for leftover in (store_file, store_file.with_name("bridge.db-wal"), store_file.with_name("bridge.db-shm")):
            leftover.unlink(missing_ok=True)
        settings = settings.model_copy(
            update={"bridge": settings.bridge.model_copy(update={"store_url": StoreUrl.sqlite(store_file)})}
        )
        if settings.admin.token is None:
            # Operators of the sandbox get the admin API too; the demo file keeps the token for the CLI.
            self.admin_token = secrets.token_urlsafe(24)
            admin = settings.admin.model_copy(update={"token": SecretStr(self.admin_token)})
            settings = settings.model_copy(update={"admin": admin})
        if settings.sandbox.demo:
            settings, self.demo = await with_demo(
                settings, info.control_url, info.ca_file, self._base, self.admin_token
            )
            self._inbox = DemoInbox(settings.webhook_clients[DEMO_CLIENT])
        if settings.events.subscribe_sandbox and settings.events.secret is None:
            events = settings.events.model_copy(update={"secret": SecretStr(secrets.token_urlsafe(24))})
            settings = settings.model_copy(update={"events": events})
        self._settings = settings
        return settings

    def routes(self) -> list[web.RouteDef]:
        return self._inbox.routes() if self._inbox is not None else []

    async def connect(self) -> None:
        """Once the bridge listens: the sandbox delivers chat and SMS events to its doors, Twilio texts to its door."""
        info, settings, base = self.info, self._settings, self._base
        assert info is not None
        if settings.events.subscribe_sandbox and settings.events.secret is not None:
            secret = settings.events.secret.get_secret_value()
            await subscribe_sandbox_events(info, f"{base}{CHAT_EVENTS_PATH}", secret, CHAT_EVENTS)
        if settings.sms.gateway == "twilio":
            await point_sandbox_twilio(info, f"{base}{TWILIO_INBOUND_PATH}")
        if settings.sms.gateway == "acs" and settings.sms.events_secret is not None:
            secret = settings.sms.events_secret.get_secret_value()
            await subscribe_sandbox_events(info, f"{base}{SMS_EVENTS_PATH}", secret, SMS_EVENT_TYPES)

    async def stop(self) -> None:
        await self._sandbox.stop()
