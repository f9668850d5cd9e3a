"""A stand-in for Twilio's Messages API: Basic auth, form sends, idempotency, signed callbacks and inbound webhooks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .credentials import SandboxCredentials
from .errors import bad_request
from .keys import INFO, RESET_HOOKS, WORLD
from .phones import OtherNumber, Phones, Sms, encoded_size, is_e164
from .sms_api import PHONES
from .twilio_webhooks import IDEMPOTENCY_HEADER, Stats, WebhookSender
from .util import JsonDict, now
from .web_util import json_body, json_response

routes = web.RouteTableDef()

NUMBER = "+18005550199"
API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
REMEMBERED_TOKENS = 10_000


def account_from(credentials: SandboxCredentials) -> tuple[str, str]:
    """(account sid, auth token), derived from the persisted signing key so they survive restarts."""
    key = credentials.signing_key_bytes
    sid = "AC" + hmac.new(key, b"sandbox twilio account sid", hashlib.sha256).hexdigest()[:32]
    token = hmac.new(key, b"sandbox twilio auth token", hashlib.sha256).hexdigest()[:32]
    return sid, token


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class TwilioError(Exception):
    """An error Twilio answers in its own shape: code, message, more_info, status."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if self.status == 401 else None
        return json_response(body, self.status, headers)


class TwilioStandIn:
    """The sandbox's Twilio account: one number, sends to the simulated phones, webhooks to the bridge."""

    def __init__(self, credentials: SandboxCredentials, phones: Phones, info: dict[str, Any]) -> None:
        self.account_sid, self.auth_token = account_from(credentials)
        self.number = NUMBER
        self._phones = phones
        self._info = info
        self.webhooks = WebhookSender(info)
        self.reset()

    def reset(self) -> None:
        self.webhooks.cancel_all()
        self.sms_url: str | None = None
        self.undeliverable: set[str] = set()
        self.inbound = Stats()
        self.callbacks = Stats()
        self._first_answers: dict[str, JsonDict] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def base_url(self) -> str:
        return str(self._info.get("endpoint", "")).rstrip("/") + "/twilio"

    def to_json(self) -> JsonDict:
        return {
            "accountSid": self.account_sid,
            "authToken": self.auth_token,
            "number": self.number,
            "baseUrl": self.base_url,
            "smsUrl": self.sms_url,
            "undeliverable": sorted(self.undeliverable),
            "stats": {"inbound": self.inbound.to_json(), "statusCallbacks": self.callbacks.to_json()},
        }

    def authorized(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return False
        sid_ok = hmac.compare_digest(login.encode(), self.account_sid.encode())
        token_ok = hmac.compare_digest(password.encode(), self.auth_token.encode())
        return scheme.lower() == "basic" and sid_ok and token_ok

    def create(self, form: Mapping[str, str], token: str | None) -> JsonDict:
        """Validate and send one message; a repeated idempotency token answers the first message again."""
        if token and token in self._first_answers:
            return self._first_answers[token]
        to, sender, body = form.get("To", "").strip(), form.get("From", "").strip(), form.get("Body", "")
        callback = form.get("StatusCallback") or None
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if not sender:
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        if not body:
            raise TwilioError(400, 21602, "Message body is required.")
        if not is_e164(to):
            raise TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if sender != self.number:
            raise TwilioError(
                400, 21606, f"The From phone number {sender} is not a valid, SMS-capable phone number for your account."
            )
        if to == sender:
            raise TwilioError(400, 21266, "'To' and 'From' number cannot be the same")
        if len(body) > MAX_BODY_CHARS:
            raise TwilioError(400, 21617, f"The message body exceeds the {MAX_BODY_CHARS} character limit.")
        if callback is not None and not _http_url(callback):
            raise TwilioError(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
        if to in self._phones.opted_out:
            raise TwilioError(400, 21610, "Attempt to send to unsubscribed recipient")
        segments, _ = encoded_size(body)
        sms = Sms(new_sid("SM"), sender, to, body, now(), segments)
        answer = self._resource(sms)
        if token:
            if len(self._first_answers) >= REMEMBERED_TOKENS:
                del self._first_answers[next(iter(self._first_answers))]
            self._first_answers[token] = answer
        if to not in self.undeliverable:
            self._phones.inboxes.setdefault(to, []).append(sms)
        if callback is not None:
            self.webhooks.spawn(self._report(sms, callback), f"twilio-status-{sms.message_id}")
        return answer

    def _resource(self, sms: Sms) -> JsonDict:
        created = format_datetime(datetime.fromtimestamp(sms.received, UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sms.message_id}"
        nulls = ("date_sent", "error_code", "error_message", "messaging_service_sid", "price")
        return dict.fromkeys(nulls) | {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": sms.message,
            "date_created": created,
            "date_updated": created,
            "direction": "outbound-api",
            "from": sms.sender,
            "num_media": "0",
            "num_segments": str(sms.segment_count),
            "price_unit": "USD",
            "sid": sms.message_id,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": sms.recipient,
            "uri": f"{uri}.json",
        }

    # webhooks ----------------------------------------------------------------------------------------

    def _common(self, sms: Sms) -> dict[str, str]:
        ids = {"MessageSid": sms.message_id, "SmsSid": sms.message_id, "AccountSid": self.account_sid}
        return ids | {"From": sms.sender, "To": sms.recipient, "ApiVersion": API_VERSION}

    def on_text(self, sms: Sms) -> None:
        """Phones hook: a simulated phone texted the Twilio number; the webhook goes out in the background."""
        self.webhooks.spawn(self._inbound(sms, self.sms_url), f"twilio-inbound-{sms.message_id}")

    async def _inbound(self, sms: Sms, url: str | None) -> None:
        if url is None:
            self.inbound.dropped += 1
            self.inbound.last_error = "no smsUrl configured (PUT /sandbox/v1/twilio)"
            return
        params = self._common(sms) | {
            "SmsMessageSid": sms.message_id,
            "Body": sms.message,
            "NumSegments": str(sms.segment_count),
            "NumMedia": "0",
            "SmsStatus": "received",
        }
        # One phone's texts reach the bridge in the order they were sent.
        async with self._locks.setdefault(sms.sender, asyncio.Lock()):
            await self.webhooks.post(url, params, self.auth_token, self.inbound, sms.message_id)

    async def _report(self, sms: Sms, url: str) -> None:
        final = "undelivered" if sms.recipient in self.undeliverable else "delivered"
        for status in ("sent", final):
            params = self._common(sms) | {"MessageStatus": status, "SmsStatus": status}
            if status == "undelivered":
                params["ErrorCode"] = "30003"  # Twilio's "Unreachable destination handset"
            await self.webhooks.post(url, params, self.auth_token, self.callbacks, f"{sms.message_id}-{status}")


TWILIO: web.AppKey[TwilioStandIn] = web.AppKey("twilio", TwilioStandIn)


@routes.post(f"/twilio/{API_VERSION}/Accounts/{{account}}/Messages.json")
async def create_message(request: web.Request) -> web.Response:
    """Twilio's Messages create: 201 with the message resource, or Twilio's error shape."""
    twilio = request.app[TWILIO]
    try:
        if not twilio.authorized(request.headers.get("Authorization")):
            raise TwilioError(401, 20003, "Authenticate")
        if request.match_info["account"] != twilio.account_sid:
            raise TwilioError(404, 20404, f"The requested resource {request.path} was not found")
        form = await request.post()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        answer = twilio.create(fields, request.headers.get(IDEMPOTENCY_HEADER))
    except TwilioError as exc:
        return exc.response()
    return json_response(answer, status=201)


@routes.get(f"/twilio/{API_VERSION}/Accounts/{{account}}/IncomingPhoneNumbers.json")
async def incoming_numbers(request: web.Request) -> web.Response:
    """Twilio's IncomingPhoneNumbers list (the account's numbers, filtered by PhoneNumber): what a set-up check asks."""
    twilio = request.app[TWILIO]
    try:
        if not twilio.authorized(request.headers.get("Authorization")):
            raise TwilioError(401, 20003, "Authenticate")
        if request.match_info["account"] != twilio.account_sid:
            raise TwilioError(404, 20404, f"The requested resource {request.path} was not found")
    except TwilioError as exc:
        return exc.response()
    wanted = request.query.get("PhoneNumber")
    numbers = [NUMBER] if wanted in (None, NUMBER) else []
    items = [{"sid": "PN" + hashlib.sha256(n.encode()).hexdigest()[:32], "phone_number": n} for n in numbers]
    return json_response({"incoming_phone_numbers": items, "page": 0, "page_size": 50})


@routes.get("/sandbox/v1/twilio")
async def get_twilio(request: web.Request) -> web.Response:
    """The sandbox's Twilio account: sid, auth token, number, API base URL, inbound webhook and delivery stats."""
    return json_response(request.app[TWILIO].to_json())


@routes.put("/sandbox/v1/twilio")
async def put_twilio(request: web.Request) -> web.Response:
    """Configure the number's inbound webhook (smsUrl) and phones whose texts are never delivered."""
    body = await json_body(request)
    twilio = request.app[TWILIO]
    unknown = sorted(set(body) - {"smsUrl", "undeliverable"})
    if unknown:
        raise bad_request(f"Unknown setting(s) {', '.join(unknown)}; use smsUrl and undeliverable.")
    if "smsUrl" in body:
        url = body["smsUrl"]
        if url is not None and (not isinstance(url, str) or not _http_url(url)):
            raise bad_request("smsUrl must be an absolute http(s) URL, or null to remove it.")
        twilio.sms_url = url
    if "undeliverable" in body:
        numbers = body["undeliverable"]
        if not isinstance(numbers, list) or not all(is_e164(n) for n in numbers):
            raise bad_request("undeliverable must be a list of E.164 phone numbers.")
        twilio.undeliverable = set(numbers)
    return json_response(twilio.to_json())


def setup(app: web.Application) -> None:
    """Give the app its Twilio account, claim the number on the phones, and tie webhook tasks to its lifetime."""
    phones = app[PHONES]
    twilio = TwilioStandIn(app[WORLD].credentials, phones, app[INFO])
    phones.add_number(NUMBER, OtherNumber(lambda: new_sid("SM"), twilio.on_text))
    app[TWILIO] = twilio
    app[RESET_HOOKS].append(twilio.reset)
    app.cleanup_ctx.append(twilio.webhooks.lifetime)
