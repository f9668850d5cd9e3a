"""create_app(settings): the one place that wires the bridge's objects together and owns their lifetimes."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import aiohttp
from aiohttp import web

from .acs.auth import AcsAuth, acs_auth
from .acs.chat import ChatService
from .acs.graph import GraphMeetingResolver
from .acs.identity import IdentityService
from .acs.sms import AcsSmsGateway
from .admin import add_admin_api, add_console
from .calls.base import CallConnector
from .calls.client_reported import ClientReportedConnector
from .calls.sandbox import SandboxCallConnector, access_key_of
from .channels.acs_events import AcsEventsDoor
from .channels.base import Channel
from .channels.sms import SmsChannel
from .channels.sms_acs import PATH as SMS_EVENTS_PATH
from .channels.sms_acs import AcsSmsDoor
from .channels.sms_base import SmsGateway
from .channels.sms_twilio import INBOUND_PATH as TWILIO_INBOUND_PATH
from .channels.sms_twilio import STATUS_PATH as TWILIO_STATUS_PATH
from .channels.sms_twilio import TwilioDoor, TwilioGateway
from .channels.webhook import WebhookChannel, WebhookDoor
from .config import Settings
from .drain import Drain, drain_middleware
from .keys import (
    ACS_ENDPOINT,
    DOOR,
    DRAIN,
    EVENTS_DOOR,
    HTTP,
    METRICS,
    REGISTRY,
    RELAY,
    SETTINGS,
    SMS_DOOR,
    SMS_INTAKE,
    STORE,
    TWILIO_DOOR,
)
from .meetings import MeetingRegistry
from .metrics import CountingTokens, Metrics
from .relay.runtime import Relay
from .relay.sms import SmsIntake
from .store import Store

log = logging.getLogger(__name__)
EVENTS_PATH = "/channels/acs/events"


def _sms_gateway(
    settings: Settings, auth: AcsAuth, verify: str | bool, session: aiohttp.ClientSession
) -> SmsGateway | None:
    sms = settings.sms
    if sms.gateway == "acs":
        if sms.number is None:
            raise ValueError("sms.number is required for the acs gateway")
        return AcsSmsGateway(auth, sms.number, connection_verify=verify)
    if sms.gateway == "twilio":
        tw = settings.twilio
        if not (tw.account_sid and tw.auth_token and sms.number):
            raise ValueError("the twilio gateway needs twilio.account_sid, twilio.auth_token and sms.number")
        return TwilioGateway(
            tw.account_sid,
            tw.auth_token.get_secret_value(),
            sms.number,
            tw.base_url,
            tw.status_url or f"{public_base(settings)}{TWILIO_STATUS_PATH}",
            session,
            tw.ca_file,
        )
    return None


def public_base(settings: Settings) -> str:
    bridge = settings.bridge
    return (bridge.public_url or f"http://{bridge.host}:{bridge.port}").rstrip("/")


def _connector(settings: Settings, endpoint: str, session: aiohttp.ClientSession) -> CallConnector:
    kind = settings.calls.connector
    if kind == "auto":
        kind = "sandbox" if settings.use_sandbox or settings.calls.sandbox_endpoint else "client_reported"
    if kind == "sandbox":
        calls = settings.calls.sandbox_endpoint or endpoint
        secret = settings.acs.connection_string
        # With the resource's key, one event stream serves every call leg (not one connection per session); only the
        # sandbox behind the ACS endpoint knows that key.
        same = calls.rstrip("/") == endpoint.rstrip("/")
        key = access_key_of(secret.get_secret_value()) if same and secret is not None else None
        return SandboxCallConnector(calls, ca_file=settings.acs.ca_file, session=session, access_key=key)
    return ClientReportedConnector()


async def _health(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return web.json_response({"status": "ok"})


async def _acs_reachable(app: web.Application) -> bool:
    settings = app[SETTINGS]
    ssl_ctx: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=settings.acs.ca_file) if settings.acs.ca_file else True
    )
    try:
        # Any HTTP answer means the service is there; only no answer at all is an outage.
        async with app[HTTP].get(app[ACS_ENDPOINT], ssl=ssl_ctx, timeout=aiohttp.ClientTimeout(total=5)):
            return True
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _ready(request: web.Request) -> web.Response:
    """Ready to take traffic: not stopping, the store takes writes, ACS answers, and a channel is configured."""
    app = request.app
    drain = app[DRAIN]
    if drain.active:
        # A load balancer stops sending here first; the doors answer 503 with Retry-After meanwhile.
        return web.json_response({"status": "stopping", "reason": drain.reason}, status=503)
    settings = app[SETTINGS]
    channels = {"webhook": bool(settings.webhook_clients), "sms": settings.sms.gateway != "none"}
    checks = {
        "store": await app[STORE].writable(),
        "acs": await _acs_reachable(app),
        "channels": any(channels.values()),
    }
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks, "channels": channels}
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh(request.app[STORE])
    return metrics.exposition()


def create_app(settings: Settings) -> web.Application:
    """The bridge as an aiohttp app; every long-lived resource opens and closes in its own cleanup context."""
    if settings.acs.endpoint is None:
        raise ValueError("an ACS resource is required (the embedded sandbox provides one)")
    endpoint = settings.acs.endpoint
    verify: str | bool = settings.acs.ca_file or True
    app = web.Application(client_max_size=256 * 1024)
    app[SETTINGS] = settings
    app[DRAIN] = Drain()
    # First, so a stopping bridge turns intake away before any door or the admin API's auth looks at it.
    app.middlewares.append(drain_middleware)

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            app[HTTP] = session
            yield

    async def store(app: web.Application) -> AsyncIterator[None]:
        app[STORE] = await Store.open(settings.store_file)
        yield
        await app[STORE].close()

    async def relay(app: web.Application) -> AsyncIterator[None]:
        auth = acs_auth(settings.acs)
        identities = IdentityService(
            auth, connection_verify=verify, token_lifetime=timedelta(minutes=settings.acs.token_minutes)
        )
        counted = CountingTokens(identities, app[METRICS])
        chat = ChatService(endpoint, counted, connection_verify=verify)
        connector = _connector(settings, endpoint, app[HTTP])
        graph = None
        if settings.graph.configured:
            assert settings.graph.tenant_id and settings.graph.client_id and settings.graph.client_secret
            graph = GraphMeetingResolver(
                settings.graph.tenant_id,
                settings.graph.client_id,
                settings.graph.client_secret.get_secret_value(),
                authority=settings.graph.authority,
                base_url=settings.graph.base_url,
                ca_file=settings.graph.ca_file or settings.acs.ca_file,
            )
        channels: dict[str, Channel] = {"webhook": WebhookChannel(settings.webhook_clients, app[HTTP])}
        gateway = _sms_gateway(settings, auth, verify, app[HTTP])
        if gateway is not None:
            channels["sms"] = SmsChannel(gateway, app[STORE], settings.sms)
        app[RELAY] = Relay(app[STORE], counted, chat, connector, channels, settings.relay, app[METRICS])
        if gateway is not None:
            app[SMS_INTAKE] = SmsIntake(app[STORE], app[RELAY], settings.sms)
            if gateway.name == "acs" and settings.sms.events_secret is not None:
                app[SMS_DOOR] = AcsSmsDoor(settings.sms.events_secret.get_secret_value(), app[SMS_INTAKE])
            tw = settings.twilio
            if gateway.name == "twilio" and tw.auth_token is not None:
                app[TWILIO_DOOR] = TwilioDoor(
                    tw.auth_token.get_secret_value(),
                    tw.public_url,
                    app[SMS_INTAKE],
                    status_url=tw.status_url,
                    trust_forwarded=tw.trust_forwarded,
                )
        app[REGISTRY] = MeetingRegistry(app[STORE], graph)
        app[DOOR] = WebhookDoor(settings.webhook_clients, app[STORE], app[RELAY].intake, app[RELAY].forget)
        if settings.events.secret is not None:
            app[EVENTS_DOOR] = AcsEventsDoor(settings.events.secret.get_secret_value(), app[STORE], app[RELAY].readers)
        await app[REGISTRY].sync(settings.meetings)
        await app[RELAY].start()
        yield
        await app[RELAY].stop()
        await connector.close()
        if gateway is not None:
            await gateway.close()
        await chat.close()
        await identities.close()
        await auth.close()
        if graph is not None:
            await graph.close()

    app.cleanup_ctx.extend([http_session, store, relay])
    app[METRICS] = Metrics()
    app[ACS_ENDPOINT] = endpoint
    app.router.add_get("/healthz", _health)
    app.router.add_get("/readyz", _ready)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/channels/webhook/{client}", _door(lambda a: a[DOOR].handle))
    if settings.sms.gateway == "acs" and settings.sms.events_secret is not None:
        app.router.add_post(SMS_EVENTS_PATH, _door(lambda a: a[SMS_DOOR].handle))
        app.router.add_route("OPTIONS", SMS_EVENTS_PATH, _door(lambda a: a[SMS_DOOR].options))
    if settings.sms.gateway == "twilio":
        app.router.add_post(TWILIO_INBOUND_PATH, _door(lambda a: a[TWILIO_DOOR].inbound))
        app.router.add_post(TWILIO_STATUS_PATH, _door(lambda a: a[TWILIO_DOOR].status))
    if settings.events.secret is not None:
        app.router.add_post(EVENTS_PATH, _door(lambda a: a[EVENTS_DOOR].handle))
        app.router.add_route("OPTIONS", EVENTS_PATH, _door(lambda a: a[EVENTS_DOOR].options))
    if settings.admin.token is not None:
        # No token, no API and no console: their routes are not even registered.
        add_admin_api(app)
        add_console(app)
    return app


DoorMethod = Callable[[web.Request], Awaitable[web.Response]]


def _door(pick: Callable[[web.Application], DoorMethod]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Doors are built as the app starts, after its router is frozen: a route reaches its door through the app."""

    async def handler(request: web.Request) -> web.Response:
        return await pick(request.app)(request)

    return handler
