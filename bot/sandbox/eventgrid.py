"""Event Grid for the sandbox: webhook subscriptions over the control API, fed from the world's event bus."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from . import bus
from .errors import bad_request, not_found
from .eventgrid_delivery import DEFAULT_MAX_ATTEMPTS, EventGrid, HandshakeFailed, Schema, Subscription, safe_url
from .eventgrid_faults import DeliveryFaults
from .keys import INFO, RESET_HOOKS, WORLD
from .util import JsonDict, new_guid
from .web_util import json_body, json_response, str_field

routes = web.RouteTableDef()
EVENT_GRID: web.AppKey[EventGrid] = web.AppKey("event_grid", EventGrid)
SCHEMAS: tuple[Schema, ...] = ("EventGrid", "CloudEvents")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_ATTEMPTS_LIMIT = 30
MAX_BATCH = 5000
# ACS's documented event types: subscribing to one the sandbox never raises is allowed, as it is on Azure.
KNOWN_EVENT_TYPES = frozenset(
    {
        bus.CHAT_MESSAGE_RECEIVED,
        bus.CHAT_MESSAGE_EDITED,
        bus.CHAT_MESSAGE_DELETED,
        bus.CHAT_PARTICIPANT_ADDED,
        bus.CHAT_PARTICIPANT_REMOVED,
        bus.SMS_RECEIVED,
        bus.SMS_DELIVERY_REPORT,
    }
    | {
        f"Microsoft.Communication.{name}"
        for name in (
            "ChatMessageReceived",
            "ChatMessageEdited",
            "ChatMessageDeleted",
            "ChatThreadCreatedWithUser",
            "ChatThreadWithUserDeleted",
            "ChatThreadPropertiesUpdatedPerUser",
            "ChatParticipantAddedToThreadWithUser",
            "ChatParticipantRemovedFromThreadWithUser",
            "ChatThreadCreated",
            "ChatThreadDeleted",
            "ChatThreadPropertiesUpdated",
            "IncomingCall",
            "RecordingFileStatusUpdated",
        )
    }
)


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request("endpoint must be an absolute https:// URL.")
    # Event Grid itself only calls https; plain http is allowed on loopback for local receivers.
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise bad_request("endpoint must use https (plain http is accepted only on loopback).")
    return value


def _event_types(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request("eventTypes must be a list of event type names (empty or missing means all).")
    unknown = sorted(set(value) - KNOWN_EVENT_TYPES)
    if unknown:
        raise bad_request(
            f"Unknown event type(s) {', '.join(unknown)} for a Communication Services topic; "
            f"valid types are {', '.join(sorted(KNOWN_EVENT_TYPES))}."
        )
    return tuple(dict.fromkeys(value))


def _bounded_int(body: JsonDict, name: str, default: int, high: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise bad_request(f"{name} must be an integer between 1 and {high}.")
    return value


def _subscription(request: web.Request) -> Subscription:
    sub = request.app[EVENT_GRID].subscriptions.get(request.match_info["subscription"])
    if sub is None:
        raise not_found(f"Event subscription {request.match_info['subscription']} does not exist.")
    return sub


@routes.post("/sandbox/v1/event-subscriptions")
async def create_subscription(request: web.Request) -> web.Response:
    """Validate the endpoint with Event Grid's handshake, then start delivering to it."""
    body = await json_body(request)
    endpoint = _endpoint(str_field(body, "endpoint") or "")
    schema = body.get("schema", "EventGrid")
    if schema not in SCHEMAS:
        raise bad_request(f"schema must be one of {', '.join(SCHEMAS)}.")
    sub_id = new_guid()
    name = str_field(body, "name", required=False) or f"sandbox-{sub_id[:8]}"
    sub = Subscription(
        id=sub_id,
        name=name,
        endpoint=endpoint,
        event_types=_event_types(body.get("eventTypes")),
        schema="CloudEvents" if schema == "CloudEvents" else "EventGrid",
        max_events_per_batch=_bounded_int(body, "maxEventsPerBatch", 1, MAX_BATCH),
        max_attempts=_bounded_int(body, "maxDeliveryAttempts", DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_LIMIT),
        faults=DeliveryFaults.parse(body["faults"]) if body.get("faults") is not None else None,
    )
    grid = request.app[EVENT_GRID]
    try:
        await grid.handshake(sub)
    except HandshakeFailed as exc:
        raise bad_request(
            f"Webhook validation handshake failed for {safe_url(endpoint)}: {exc}.", code="InvalidRequest"
        ) from exc
    grid.add(sub)
    return json_response(sub.to_json(), status=201)


@routes.get("/sandbox/v1/event-subscriptions")
async def list_subscriptions(request: web.Request) -> web.Response:
    return json_response({"value": [s.to_json() for s in request.app[EVENT_GRID].subscriptions.values()]})


@routes.get("/sandbox/v1/event-subscriptions/{subscription}")
async def get_subscription(request: web.Request) -> web.Response:
    return json_response(_subscription(request).to_json())


@routes.delete("/sandbox/v1/event-subscriptions/{subscription}")
async def delete_subscription(request: web.Request) -> web.Response:
    request.app[EVENT_GRID].remove(_subscription(request).id)
    return web.Response(status=204)


@routes.put("/sandbox/v1/event-subscriptions/{subscription}/faults")
async def put_faults(request: web.Request) -> web.Response:
    """From now on, lose or duplicate some of the subscription's events (those whose subject matches)."""
    sub = _subscription(request)
    sub.faults = DeliveryFaults.parse(await json_body(request))
    return json_response(sub.to_json())


@routes.delete("/sandbox/v1/event-subscriptions/{subscription}/faults")
async def clear_faults(request: web.Request) -> web.Response:
    _subscription(request).faults = None
    return web.Response(status=204)


def _client_ssl(app: web.Application) -> ssl.SSLContext:
    """System roots plus the sandbox's CA, so receivers served with a sandbox certificate are trusted too."""
    ctx = ssl.create_default_context()
    ca_file = app[INFO].get("caFile")
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


async def _delivery(app: web.Application) -> AsyncIterator[None]:
    grid = app[EVENT_GRID]
    events = app[WORLD].events
    async with aiohttp.ClientSession() as session:
        grid.start(session)
        events.subscribe(grid.on_event)
        try:
            yield
        finally:
            events.unsubscribe(grid.on_event)
            await grid.close()


def setup(app: web.Application) -> None:
    """Attach the subscriptions and their delivery session and workers to the app's lifetime."""
    world = app[WORLD]
    topic = (
        f"/subscriptions/{world.credentials.resource_id}/resourceGroups/sandbox"
        "/providers/Microsoft.Communication/communicationServices/sandbox"
    )
    contexts: dict[str, ssl.SSLContext] = {}

    def client_ssl() -> ssl.SSLContext:
        # The CA path is known only once the server listens; build the context on first use and keep it.
        key = str(app[INFO].get("caFile", ""))
        if key not in contexts:
            contexts.clear()
            contexts[key] = _client_ssl(app)
        return contexts[key]

    grid = EventGrid(topic, client_ssl)
    app[EVENT_GRID] = grid
    app[RESET_HOOKS].append(grid.clear)
    app.cleanup_ctx.append(_delivery)
