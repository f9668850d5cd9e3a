"""create_app(settings): the one place that wires the bridge's objects together and owns their lifetimes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
from aiohttp import web

from .acs.chat import ChatService
from .acs.graph import GraphMeetingResolver
from .acs.identity import IdentityService
from .calls.base import CallConnector
from .calls.client_reported import ClientReportedConnector
from .calls.sandbox import SandboxCallConnector
from .channels.acs_events import AcsEventsDoor
from .channels.webhook import WebhookChannel, WebhookDoor
from .config import Settings
from .keys import DOOR, EVENTS_DOOR, HTTP, REGISTRY, RELAY, SETTINGS, STORE
from .meetings import MeetingRegistry
from .relay.runtime import Relay
from .store import Store

log = logging.getLogger(__name__)
EVENTS_PATH = "/channels/acs/events"


def acs_endpoint(connection_string: str) -> str:
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            return value.strip()
    raise ValueError("the ACS connection string has no endpoint")


def _connector(settings: Settings, endpoint: str, session: aiohttp.ClientSession) -> CallConnector:
    kind = settings.calls.connector
    if kind == "auto":
        kind = "sandbox" if settings.use_sandbox or settings.calls.sandbox_endpoint else "client_reported"
    if kind == "sandbox":
        return SandboxCallConnector(
            settings.calls.sandbox_endpoint or endpoint, ca_file=settings.acs.ca_file, session=session
        )
    return ClientReportedConnector()


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(settings: Settings) -> web.Application:
    """The bridge as an aiohttp app; every long-lived resource opens and closes in its own cleanup context."""
    if settings.acs.connection_string is None:
        raise ValueError("acs.connection_string is required (the embedded sandbox provides one)")
    connection_string = settings.acs.connection_string.get_secret_value()
    endpoint = acs_endpoint(connection_string)
    verify: str | bool = settings.acs.ca_file or True
    app = web.Application(client_max_size=256 * 1024)
    app[SETTINGS] = settings

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            app[HTTP] = session
            yield

    async def store(app: web.Application) -> AsyncIterator[None]:
        app[STORE] = await Store.open(settings.store_file)
        yield
        await app[STORE].close()

    async def relay(app: web.Application) -> AsyncIterator[None]:
        identities = IdentityService(
            connection_string, connection_verify=verify, token_lifetime=timedelta(minutes=settings.acs.token_minutes)
        )
        chat = ChatService(endpoint, identities, connection_verify=verify)
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
        channels = {"webhook": WebhookChannel(settings.webhook_clients, app[HTTP])}
        app[RELAY] = Relay(app[STORE], identities, chat, connector, channels, settings.relay)
        app[REGISTRY] = MeetingRegistry(app[STORE], graph)
        app[DOOR] = WebhookDoor(settings.webhook_clients, app[STORE], app[RELAY].intake, app[RELAY].forget)
        if settings.events.secret is not None:
            app[EVENTS_DOOR] = AcsEventsDoor(settings.events.secret.get_secret_value(), app[STORE], app[RELAY].readers)
        await app[REGISTRY].sync(settings.meetings)
        await app[RELAY].start()
        yield
        await app[RELAY].stop()
        await connector.close()
        await chat.close()
        await identities.close()
        if graph is not None:
            await graph.close()

    app.cleanup_ctx.extend([http_session, store, relay])
    app.router.add_get("/healthz", _health)
    app.router.add_post("/channels/webhook/{client}", _webhook)
    if settings.events.secret is not None:
        app.router.add_post(EVENTS_PATH, _events)
        app.router.add_route("OPTIONS", EVENTS_PATH, _events_handshake)
    return app


async def _events(request: web.Request) -> web.Response:
    return await request.app[EVENTS_DOOR].handle(request)


async def _events_handshake(request: web.Request) -> web.Response:
    return await request.app[EVENTS_DOOR].options(request)


async def _webhook(request: web.Request) -> web.Response:
    return await request.app[DOOR].handle(request)
