"""What every Event Grid door shares: the secret in the subscription's URL, the CloudEvents handshake, the body."""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from ..refusal import refuse
from .bodies import declares_json, read_body

MAX_BODY_BYTES = 1024 * 1024  # Event Grid's own limit for one delivery
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def is_text(value: str) -> bool:
    """Whether a string can be stored and sent on: JSON escapes such as \\ud800 decode to lone surrogates,
    which no UTF-8 encoder (SQLite's, the SDKs') accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BadBody(ValueError):
    """A delivery's body that holds no events; the message is the reason."""


def parse_events(body: bytes) -> list[Any]:
    """The events of a delivery's body: an Event Grid array, one CloudEvent or a CloudEvents batch. BadBody else."""
    try:
        # UTF-8 only (json.loads would guess UTF-16 from bytes), and no NaN or Infinity, which JSON has not.
        parsed: Any = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except RecursionError:
        raise BadBody("the body is nested too deeply") from None
    except ValueError:  # UnicodeDecodeError included
        raise BadBody("the body is not UTF-8 JSON") from None
    if not isinstance(parsed, list | dict):
        raise BadBody("the body must be an event or an array of events")
    return parsed if isinstance(parsed, list) else [parsed]


class EventGridDoor:
    """Event Grid bodies are not signed: the secret in the subscription's URL (?code=) authenticates them."""

    path: str
    """Where the subscription delivers: the door's POST and its OPTIONS handshake."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an Event Grid door needs a secret")
        self._secret = secret.encode("utf-8")

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self.handle), web.route("OPTIONS", self.path, self.options)]

    async def handle(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    def authentic(self, request: web.Request) -> bool:
        given = request.query.get("code", "").encode("utf-8")
        return hmac.compare_digest(given, self._secret)

    async def options(self, request: web.Request) -> web.Response:
        """The CloudEvents validation handshake: allow the origin that asked."""
        if not self.authentic(request):
            return refuse(401, "unauthorized", "missing or wrong code")
        origin = request.headers.get("WebHook-Request-Origin", "")
        return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin or "*"})

    async def read_events(self, request: web.Request) -> list[Any] | web.Response:
        """The events of an authentic delivery (an Event Grid array, one CloudEvent or a batch), or the refusal."""
        if not self.authentic(request):
            return refuse(401, "unauthorized", "missing or wrong code")
        body = await read_body(request, MAX_BODY_BYTES)
        if body is None:
            return refuse(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        if not declares_json(request):
            return refuse(415, "unsupported_media_type", "the body must be application/json")
        try:
            return parse_events(body)
        except BadBody as exc:
            return refuse(400, "bad_request", str(exc))
