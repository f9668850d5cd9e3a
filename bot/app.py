"""create_app(settings): the one place that builds the bridge's objects and ties each one's lifetime to the app."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
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
from .calls.browser import browser_connector
from .calls.choice import connector_kind
from .calls.client_reported import ClientReportedConnector
from .calls.sandbox import SandboxCallConnector, access_key_of
from .channels.chat_events import ChatEventsDoor
from .channels.sms.acs import AcsSmsDoor
from .channels.sms.base import SmsGateway
from .channels.sms.channel import SmsChannel
from .channels.sms.intake import SmsIntake
from .channels.sms.twilio import STATUS_PATH as TWILIO_STATUS_PATH
from .channels.sms.twilio import TwilioDoor, TwilioGateway
from .channels.webhook import WebhookChannel, WebhookDoor
from .config import SETTINGS, Settings
from .drain import DRAIN, Drain, drain_middleware
from .meetings import REGISTRY, MeetingRegistry
from .metrics import METRICS, CountingTokens, Metrics
from .readiness import CachedCheck
from .relay.consent import CONSENT, ConsentLedger
from .relay.ports import Channel
from .relay.runtime import RELAY, Relay
from .store import STORE, Store, store_for
from .unavailable import store_unavailable_middleware

log = logging.getLogger(__name__)
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http")
ACS_CHECK: web.AppKey[CachedCheck] = web.AppKey("acs_check")
"""Whether ACS answers, for /readyz: asked at most once every few seconds however often it is called."""
CLIENT_TIMEOUT_S = 30

Lifetime = Callable[[web.Application], AsyncIterator[None]]


def public_base(settings: Settings) -> str:
    bridge = settings.bridge
    return (bridge.public_url or f"http://{bridge.host}:{bridge.port}").rstrip("/")


def check_wiring(settings: Settings) -> None:
    """What create_app needs beyond what the settings validated alone; raised before anything is opened."""
    if settings.acs.endpoint is None:
        raise ValueError("an ACS resource is required: acs.connection_string, or acs.endpoint with a credential")
    sms, tw = settings.sms, settings.twilio
    if sms.gateway == "acs" and sms.number is None:
        raise ValueError("sms.number is required for the acs gateway")
    if sms.gateway == "twilio" and not (tw.account_sid and tw.auth_token and sms.number):
        raise ValueError("the twilio gateway needs twilio.account_sid, twilio.auth_token and sms.number")


def _sms_gateway(settings: Settings, auth: AcsAuth, session: aiohttp.ClientSession) -> SmsGateway | None:
    sms, tw = settings.sms, settings.twilio
    if sms.gateway == "acs":
        assert sms.number is not None
        verify: str | bool = settings.acs.ca_file or True
        return AcsSmsGateway(auth, sms.number, connection_verify=verify)
    if sms.gateway == "twilio":
        assert tw.account_sid and tw.auth_token and sms.number
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


def call_connector(settings: Settings, endpoint: str, session: aiohttp.ClientSession) -> CallConnector:
    kind = connector_kind(settings)
    if kind == "browser":
        return browser_connector(settings, endpoint)
    if kind == "sandbox":
        calls = settings.calls.sandbox_endpoint or endpoint
        secret = settings.acs.connection_string
        # With the resource's key, one event stream serves every call leg (not one connection per session); only the
        # sandbox behind the ACS endpoint knows that key.
        same = calls.rstrip("/") == endpoint.rstrip("/")
        key = access_key_of(secret.get_secret_value()) if same and secret is not None else None
        return SandboxCallConnector(calls, ca_file=settings.acs.ca_file, session=session, access_key=key)
    return ClientReportedConnector()


def graph_resolver(settings: Settings) -> GraphMeetingResolver | None:
    graph = settings.graph
    if not graph.configured:
        return None
    assert graph.tenant_id and graph.client_id and graph.client_secret
    return GraphMeetingResolver(
        graph.tenant_id,
        graph.client_id,
        graph.client_secret.get_secret_value(),
        authority=graph.authority,
        base_url=graph.base_url,
        ca_file=graph.ca_file or settings.acs.ca_file,
    )


def _closing(close: Callable[[], Awaitable[None]]) -> Lifetime:
    """A resource that is ready once built and is closed when the app stops."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        yield
        await close()

    return lifetime


def _running(start: Callable[[], Awaitable[object]], stop: Callable[[], Awaitable[None]]) -> Lifetime:
    """A resource opened as the app starts; its stop runs only if its start finished."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await start()
        yield
        await stop()

    return lifetime


async def _health(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return web.json_response({"status": "ok"})


async def _acs_reachable(app: web.Application) -> bool:
    settings = app[SETTINGS]
    assert settings.acs.endpoint is not None
    ssl_ctx: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=settings.acs.ca_file) if settings.acs.ca_file else True
    )
    try:
        # Any HTTP answer means the service is there; only no answer at all is an outage.
        async with app[HTTP].get(settings.acs.endpoint, ssl=ssl_ctx, timeout=aiohttp.ClientTimeout(total=5)):
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
        "acs": await app[ACS_CHECK](),
        "channels": any(channels.values()),
    }
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks, "channels": channels}
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh(request.app[STORE])
    return metrics.exposition()


@dataclass
class Parts:
    """The bridge's objects, built at once without I/O; what of them lives long is opened by `lifetimes`."""

    settings: Settings
    metrics: Metrics
    http: aiohttp.ClientSession
    store: Store
    auth: AcsAuth
    identities: IdentityService
    chat: ChatService
    graph: GraphMeetingResolver | None
    gateway: SmsGateway | None
    connector: CallConnector
    relay: Relay
    registry: MeetingRegistry
    consent: ConsentLedger

    @classmethod
    def build(cls, settings: Settings) -> Parts:
        check_wiring(settings)
        assert settings.acs.endpoint is not None
        endpoint = settings.acs.endpoint
        verify: str | bool = settings.acs.ca_file or True
        metrics = Metrics()
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S))
        store = store_for(settings.store_url)
        # The access key or an Entra ID credential; shared by the identity and SMS clients (chat uses user tokens).
        auth = acs_auth(settings.acs)
        identities = IdentityService(
            auth,
            connection_verify=verify,
            token_lifetime=timedelta(minutes=settings.acs.token_minutes),
        )
        tokens = CountingTokens(identities, metrics)
        chat = ChatService(endpoint, tokens, connection_verify=verify)
        gateway = _sms_gateway(settings, auth, http)
        connector = call_connector(settings, endpoint, http)
        channels: dict[str, Channel] = {"webhook": WebhookChannel(settings.webhook_clients, http)}
        if gateway is not None:
            channels["sms"] = SmsChannel(gateway, store, settings.sms)
        events = settings.events.secret is not None
        # Apps that hold their own call legs report on them through the webhook door, which the relay passes on.
        reports = connector if isinstance(connector, ClientReportedConnector) else None
        relay = Relay(
            store, tokens, chat, connector, channels, settings.relay, metrics, chat_events=events, reports=reports
        )
        graph = graph_resolver(settings)
        registry = MeetingRegistry(store, graph)
        key = settings.sms.consent_key
        consent = ConsentLedger(
            store,
            settings.sms.consent_retention_days,
            configured_key=key.get_secret_value() if key is not None else None,
            state_dir=settings.bridge.state_dir,
        )
        relay.sweeps.append(consent.prune)
        parts = (settings, metrics, http, store, auth, identities, chat, graph, gateway, connector, relay, registry)
        return cls(*parts, consent)

    def doors(self) -> list[web.RouteDef]:
        """Every inbound door's routes: the webhook's always, SMS and Event Grid's where configured."""
        settings, store, relay = self.settings, self.store, self.relay
        routes = WebhookDoor(settings.webhook_clients, relay.intake).routes()
        if self.gateway is not None:
            intake = SmsIntake(store, relay, settings.sms, self.consent)
            if self.gateway.name == "acs" and settings.sms.events_secret is not None:
                routes += AcsSmsDoor(settings.sms.events_secret.get_secret_value(), intake).routes()
            tw = settings.twilio
            if self.gateway.name == "twilio" and tw.auth_token is not None:
                secret = tw.auth_token.get_secret_value()
                door = TwilioDoor(
                    secret, tw.public_url, intake, status_url=tw.status_url, trust_forwarded=tw.trust_forwarded
                )
                routes += door.routes()
        if settings.events.secret is not None:
            routes += ChatEventsDoor(settings.events.secret.get_secret_value(), store, relay.readers).routes()
        return routes

    def lifetimes(self) -> list[Lifetime]:
        """One cleanup context each; aiohttp runs the cleanups in reverse: the relay stops first, HTTP closes last."""
        lifetimes = [
            _closing(self.http.close),
            _running(self.store.open, self.store.close),
            _running(self.consent.open, _nothing),
            _closing(self.auth.close),  # after the identity and SMS clients that use it
            _closing(self.identities.close),
            _closing(self.chat.close),
            _running(self.connector.start, self.connector.close),
        ]
        if self.graph is not None:
            lifetimes.append(_closing(self.graph.close))
        if self.gateway is not None:
            lifetimes.append(_closing(self.gateway.close))
        meetings = self.settings.meetings
        lifetimes += [
            _running(lambda: self.registry.sync(meetings), _nothing),
            _running(self.relay.start, self.relay.stop),
        ]
        return lifetimes


def create_app(settings: Settings, *, extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """The bridge as an aiohttp app: every object built here, at once; every long-lived one opened and closed in a
    cleanup context of its own, so a start that fails half-way closes exactly what it had opened.

    `extra_routes` are added with the bridge's own (the embedded demo's inbox, say), before the router freezes.
    """
    parts = Parts.build(settings)
    # The drain first, so a stopping bridge turns intake away before any door or the admin API's auth looks at it.
    # Then the store's outage: a request it cuts short is answered 503, and the drain still counts it.
    app = web.Application(client_max_size=256 * 1024, middlewares=[drain_middleware, store_unavailable_middleware])
    app.add_routes([web.get("/healthz", _health), web.get("/readyz", _ready), web.get("/metrics", _metrics)])
    app.add_routes([*parts.doors(), *extra_routes])
    app[SETTINGS] = settings
    app[DRAIN] = Drain()
    app[METRICS] = parts.metrics
    app[HTTP] = parts.http
    app[STORE] = parts.store
    app[RELAY] = parts.relay
    app[REGISTRY] = parts.registry
    app[CONSENT] = parts.consent
    app[ACS_CHECK] = CachedCheck(lambda: _acs_reachable(app))
    app.cleanup_ctx.extend(parts.lifetimes())
    if settings.admin.token is not None:
        # No token, no API and no console: their routes are not even registered.
        add_admin_api(app)
        add_console(app)
    return app


async def _nothing() -> None:
    return None
