"""The Event Grid door for ACS chat events: handshakes answered, the shared secret checked, threads poked."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Protocol

from aiohttp import web

from ..store import Store

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
CHAT_EVENTS = (
    "Microsoft.Communication.ChatMessageReceivedInThread",
    "Microsoft.Communication.ChatMessageEditedInThread",
    "Microsoft.Communication.ChatMessageDeletedInThread",
)


class ThreadPoke(Protocol):
    def poke(self, meeting_id: str) -> None: ...


def _reject(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


class AcsEventsDoor:
    """Event Grid bodies are not signed: the secret in the subscription's URL authenticates them."""

    def __init__(self, secret: str, store: Store, readers: ThreadPoke) -> None:
        self._secret = secret.encode("utf-8")
        self._store = store
        self._readers = readers

    def _authentic(self, request: web.Request) -> bool:
        given = request.query.get("code", "").encode("utf-8")
        return hmac.compare_digest(given, self._secret)

    async def options(self, request: web.Request) -> web.Response:
        """The CloudEvents validation handshake."""
        if not self._authentic(request):
            return _reject(401, "unauthorized", "missing or wrong code")
        origin = request.headers.get("WebHook-Request-Origin", "")
        return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin or "*"})

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authentic(request):
            return _reject(401, "unauthorized", "missing or wrong code")
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return _reject(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            parsed: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return _reject(400, "bad_request", "the body is not JSON")
        events = parsed if isinstance(parsed, list) else [parsed]
        if not all(isinstance(e, dict) for e in events):
            return _reject(400, "bad_request", "events must be JSON objects")
        for event in events:
            kind = event.get("eventType") or event.get("type")
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            if kind == VALIDATION_EVENT:
                return web.json_response({"validationResponse": data.get("validationCode")})
            if kind in CHAT_EVENTS and isinstance(data.get("threadId"), str):
                meeting = await self._store.meeting_by_thread(data["threadId"])
                if meeting is not None:
                    self._readers.poke(meeting.id)
        return web.json_response({"received": len(events)})
