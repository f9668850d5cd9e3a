"""The signed webhook channel: Standard Webhooks in (POST /channels/webhook/{client}) and out (callbacks)."""

from __future__ import annotations

import binascii
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ..address import Address
from ..config import WebhookClient
from ..errors import PermanentError, TransientError, from_status, parse_retry_after
from ..formatting import clean_name
from ..models import CallState, Delivery, ExternalUser, Meeting
from ..refusal import refuse
from ..relay.intake import Action, Forget, Intake, Join, Leave, Message, Report, Sender, Ticket
from ..relay.outcomes import (
    Accepted,
    Blocked,
    Busy,
    Held,
    NotAllowed,
    NotInCall,
    NotReported,
    Outcome,
    Paused,
    UnknownMeeting,
    record,
)
from .bodies import declares_json, id_refusal, read_body

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
CALLBACK_TIMEOUT_S = 10.0
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,11}")


class WebhookUser(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+-]+$")
    display_name: str | None = Field(None, alias="displayName", min_length=1, max_length=256)

    @field_validator("display_name")
    @classmethod
    def _visible(cls, value: str | None) -> str | None:
        # Stored as shown, cleaned as on every channel; a name of invisible characters alone would show as nothing.
        if value is None:
            return None
        cleaned = clean_name(value)
        if not cleaned:
            raise ValueError("has nothing visible once invisible and control characters are taken out")
        return cleaned


REPORTED_STATES = ("lobby", "connected", "left", "removed", "ended")
"""What an app that holds its own call leg may report: the Calling SDK's states as the bridge names them."""


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["message", "join", "leave", "forget", "call"]
    user: WebhookUser
    meeting: str | None = Field(None, min_length=1, max_length=128)
    """The meeting's join code or id; every type but forget needs it."""
    text: str | None = None
    state: Literal["lobby", "connected", "left", "removed", "ended"] | None = None
    """A call report's state."""
    call_id: str | None = Field(None, alias="callId", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@+-]+$")
    """A call report's call, as the app's Calling SDK names it (call.id)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def _refused(status: int, error: str, reason: str, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, {"error": error, "reason": reason}, headers or {})


def _not_in_call(kind: str, state: str) -> str:
    if kind == "leave":
        return "there is no session to leave"
    if kind == "call":
        if state == "none":
            return "there is no session in this meeting to report on: join first (a session that ended stays ended)"
        return "the bridge is still setting up this session's call: report again in a moment"
    return (
        "join the meeting first" if state == "none" else "messages are relayed only while you are in the meeting call"
    )


def _busy(outcome: Busy) -> str:
    if outcome.scope == "meeting":
        return f"the meeting backlog is full ({outcome.waiting} messages waiting to be sent); try again later"
    return f"your backlog is full ({outcome.waiting} of your messages waiting to be sent); try again later"


_NOT_REPORTED = {
    "connector": "this bridge holds the call legs itself (calls.connector is not client_reported): it takes no call "
    "reports",
    "shared": "this session's call leg speaks for the whole meeting (identity_mode shared): no one app holds it",
}


def http_answer(outcome: Outcome, kind: str) -> Answer:
    """The HTTP answer to a request of this type (join, leave, message, forget, call) that had this outcome."""
    if isinstance(outcome, Accepted | Held):
        return Answer(202, record(outcome))
    if isinstance(outcome, UnknownMeeting):
        return _refused(404, "unknown_meeting", f"no meeting with code {outcome.ref!r}")
    if isinstance(outcome, Paused):
        return _refused(403, "paused", "this meeting is paused by an operator")
    if isinstance(outcome, Blocked):
        return _refused(403, "blocked", "this user is blocked")
    if isinstance(outcome, NotAllowed):
        return _refused(403, "not_allowed", "this user may not join this meeting")
    if isinstance(outcome, NotInCall):
        body = {"error": "not_in_call", "state": outcome.state, "reason": _not_in_call(kind, outcome.state)}
        return Answer(409, body)
    if isinstance(outcome, NotReported):
        return _refused(409, "not_reported", _NOT_REPORTED[outcome.why])
    return _refused(429, "busy", _busy(outcome), {"Retry-After": str(outcome.retry_after)})


def _json_answer(answer: Answer) -> web.Response:
    return web.json_response(answer.body, status=answer.status, headers=answer.headers or None)


def _reject(status: int, error: str, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return refuse(status, error, reason, headers=headers)


def _invalid(client: WebhookClient, event: WebhookEvent) -> web.Response | None:
    """Why the event cannot be submitted as it stands (a 400 or 413), or None."""
    if event.meeting is None and event.type != "forget":
        return _reject(400, "bad_request", f"meeting: a {event.type} needs the meeting's code")
    if event.type == "call":
        if event.state is None:
            return _reject(400, "bad_request", f"state: a call report needs one of {', '.join(REPORTED_STATES)}")
        if event.text is not None:
            return _reject(400, "bad_request", "text: a call report has no text")
    elif event.state is not None or event.call_id is not None:
        field = "state" if event.state is not None else "callId"
        return _reject(400, "bad_request", f"{field}: only a call report has one")
    if event.type == "message":
        if not event.text or not event.text.strip():
            return _reject(400, "bad_request", "text: a message needs non-empty text")
        if len(event.text.encode("utf-8")) > client.max_message_bytes:
            return _reject(413, "too_large", f"text is longer than {client.max_message_bytes} bytes")
    return None


def _action(event: WebhookEvent) -> Action:
    meeting = event.meeting or ""
    if event.type == "join":
        return Join(meeting)
    if event.type == "leave":
        return Leave(meeting)
    if event.type == "message":
        return Message(meeting, event.text or "")
    if event.type == "call":
        assert event.state is not None
        return Report(meeting, CallState(event.state), event.call_id)
    return Forget()


class _Bucket:
    def __init__(self, rate: float) -> None:
        self.rate, self.capacity = rate, rate * 2
        self.tokens, self.at = self.capacity, time.monotonic()

    def take(self) -> float:
        """0 if allowed, else seconds until a token is free."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def verify(client: WebhookClient, body: bytes, headers: Mapping[str, str]) -> str | None:
    """The reason the signature is refused, or None when one of the client's secrets signed this body."""
    if not all(headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")):
        return "missing webhook-id, webhook-timestamp or webhook-signature header"
    if not _TIMESTAMP.fullmatch(headers["webhook-timestamp"]):
        # The library parses it with float() and signs over the whole seconds: "T.99", "+T" or "0T" would pass
        # with a signature made over "T". Only the form a sender writes is taken.
        return "malformed webhook-timestamp header: integer seconds since the epoch expected"
    reason = "no signature matches"
    for secret in client.secrets:
        try:
            Webhook(secret.get_secret_value()).verify(body, dict(headers), json_parse=False)
            return None
        except WebhookVerificationError as exc:
            reason = str(exc)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            # The library raises plain ValueError on malformed signature headers.
            reason = "malformed webhook-signature header"
    return reason.lower()


class WebhookDoor:
    """Inbound: verify, parse, hand to the intake; answers with the intake's outcome, the kept one for a replay."""

    def __init__(self, clients: Mapping[str, WebhookClient], intake: Intake) -> None:
        self._clients = clients
        self._intake = intake
        self._buckets = {name: _Bucket(c.rate_per_second) for name, c in clients.items()}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/channels/webhook/{client}", self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["client"]
        client = self._clients.get(name)
        if client is None:
            return _reject(404, "unknown_client", f"no webhook client named {name!r}")
        body = await read_body(request, MAX_BODY_BYTES)
        if body is None:
            return _reject(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        if (too_long := id_refusal("webhook-id", request.headers.get("webhook-id", ""))) is not None:
            return _reject(400, "bad_request", f"{too_long} (Standard Webhooks ids are short)")
        refusal = verify(client, body, request.headers)
        if refusal is not None:
            log.info("webhook client %s: signature refused (%s)", name, refusal)
            return _reject(401, "bad_signature", refusal)
        wait = self._buckets[name].take()
        if wait > 0:
            return _reject(429, "rate_limited", "too many requests", {"Retry-After": str(max(1, round(wait)))})
        if not declares_json(request):
            return _reject(415, "unsupported_media_type", "the body must be application/json")
        try:
            event = WebhookEvent.model_validate_json(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            return _reject(400, "bad_request", f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
        ticket = await self._intake.open(f"webhook:{name}", request.headers["webhook-id"])
        if not isinstance(ticket, Ticket):
            return _json_answer(http_answer(ticket, event.type))
        if (invalid := _invalid(client, event)) is not None:
            return invalid
        sender = Sender(Address.webhook(name, event.user.id), event.user.display_name)
        outcome = await self._intake.submit(ticket, sender, _action(event))
        return _json_answer(http_answer(outcome, event.type))


def sign(secret: str, msg_id: str, payload: str, when: datetime | None = None) -> dict[str, str]:
    when = when or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, payload),
        "Content-Type": "application/json",
    }


def callback_payload(user: ExternalUser, meeting: Meeting | None, delivery: Delivery) -> dict[str, Any]:
    body = delivery.body
    sender = body.get("from") or {"displayName": "meeting bridge", "kind": "bridge"}
    return {
        "type": delivery.kind,
        "id": body.get("messageId") or delivery.id,
        "meeting": meeting.code if meeting is not None else None,
        "user": {"id": Address.of(user).handle},
        "from": sender,
        "text": body.get("text", ""),
        "sentAt": body.get("sentAt") or (delivery.created_at or datetime.now(UTC)).isoformat(),
    }


class WebhookChannel:
    """Outbound: POST a signed callback to the client's callback_url; the delivery id is the webhook-id."""

    name = "webhook"
    batch_window_s = 0.0

    def __init__(self, clients: Mapping[str, WebhookClient], session: aiohttp.ClientSession) -> None:
        self._clients = clients
        self._session = session

    async def turn(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> None:
        """Callbacks go out at once: each receiver's own 429 is retried per delivery."""

    async def deliver(self, user: ExternalUser, meeting: Meeting | None, deliveries: list[Delivery]) -> str | None:
        for delivery in deliveries:
            await self._post(user, meeting, delivery)
        return None

    async def _post(self, user: ExternalUser, meeting: Meeting | None, delivery: Delivery) -> None:
        client_name = Address.of(user).client
        client = self._clients.get(client_name)
        if client is None or not client.callback_url:
            raise PermanentError(f"webhook client {client_name!r} has no callback_url")
        payload = json.dumps(callback_payload(user, meeting, delivery), ensure_ascii=False)
        headers = sign(client.secrets[0].get_secret_value(), delivery.id, payload)
        try:
            async with self._session.post(
                client.callback_url,
                data=payload.encode("utf-8"),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
            ) as resp:
                if 200 <= resp.status < 300:
                    return
                # A receiver's 429 is retried as a counted try: a client's endpoint may answer 429 for ever.
                message, retry_after = f"callback answered {resp.status}", parse_retry_after(resp.headers)
                raise from_status(resp.status, message, retry_after=retry_after, throttled=TransientError)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"callback unreachable: {exc.__class__.__name__}") from exc
