"""The Twilio-style SMS gateway: signed inbound and status webhooks in, the Messages REST API out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from ...errors import AuthError, PermanentError, TransientError, from_status, parse_retry_after
from ...phones import mask
from ...refusal import refuse
from ..bodies import id_refusal, read_body
from .base import InboundSms, SmsReceiver

log = logging.getLogger(__name__)

INBOUND_PATH = "/channels/twilio-sms"
STATUS_PATH = "/channels/twilio-sms/status"
SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024
SEND_TIMEOUT_S = 15.0
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed"})
UNSUBSCRIBED_RECIPIENT = 21610  # Twilio's error for a number that texted STOP to the sender
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
_DEFAULT_PORTS = {"http": 80, "https": 443}

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(params: Params) -> list[tuple[str, str]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


def twilio_signature(auth_token: str, url: str, params: Params) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by every parameter's name and value, sorted."""
    data = url + "".join(name + value for name, value in sorted(_pairs(params)))
    # surrogatepass: a Host or path byte that is not UTF-8 reaches here as a lone surrogate (aiohttp decodes with
    # surrogateescape); it is signed as some bytes, which no genuine signature matches, instead of raising.
    digest = hmac.new(auth_token.encode("utf-8", "surrogatepass"), data.encode("utf-8", "surrogatepass"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URL without its port and with it (the scheme's default when none is given), as Twilio's own
    validators check both: proxies and load balancers add or drop ports on the way."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return [url]
    netloc = parts.netloc
    bare = netloc.rsplit(":", 1)[0] if port is not None else netloc
    ported = netloc if port is not None else f"{netloc}:{_DEFAULT_PORTS.get(parts.scheme, '')}".rstrip(":")
    return list(
        dict.fromkeys([url, urlunsplit(parts._replace(netloc=bare)), urlunsplit(parts._replace(netloc=ported))])
    )


def verify_twilio(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """Whether signature is Twilio's for this URL and these parameters, compared in constant time."""
    if not signature:
        return False
    pairs, given = _pairs(params), signature.encode("utf-8", "surrogatepass")
    matched = False
    for candidate in _url_variants(url):
        # No early exit: every variant is checked, so timing says nothing about which one (if any) matched.
        matched |= hmac.compare_digest(twilio_signature(auth_token, candidate, pairs).encode("ascii"), given)
    return matched


def read_form(raw: bytes) -> list[tuple[str, str]] | None:
    """The fields of a UTF-8 form body, in order and repeats kept (the signature covers them all); None when the
    body is not one. An empty body is a form without fields."""
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except ValueError:  # UnicodeDecodeError included
        return None


class _Refused(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason

    def response(self) -> web.Response:
        return refuse(self.status, self.error, self.reason)


def _twiml() -> web.Response:
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


def _required(form: list[tuple[str, str]], *names: str) -> list[str]:
    fields = dict(reversed(form))  # the first value of a repeated name wins
    missing = [name for name in names if name not in fields]
    if missing:
        raise _Refused(400, "bad_request", f"missing form field(s): {', '.join(missing)}")
    return [fields[name] for name in names]


class TwilioDoor:
    """POST /channels/twilio-sms and /channels/twilio-sms/status: Twilio's signature checked over the URL it called,
    then texts and final delivery states handed to the receiver (which drops repeated MessageSids)."""

    def __init__(
        self,
        auth_token: str,
        public_url: str | None,
        receiver: SmsReceiver,
        *,
        status_url: str | None = None,
        trust_forwarded: bool = False,
    ) -> None:
        """public_url and status_url: the exact URLs Twilio calls (query included), when a proxy stands between;
        otherwise the URL is rebuilt from the request, from X-Forwarded-Proto/-Host only when trust_forwarded."""
        self._token = auth_token
        self._public_url = public_url
        self._status_url = status_url
        self._receiver = receiver
        self._trust_forwarded = trust_forwarded

    def routes(self) -> list[web.RouteDef]:
        return [web.post(INBOUND_PATH, self.inbound), web.post(STATUS_PATH, self.status)]

    def signed_url(self, request: web.Request, configured: str | None) -> str:
        """The URL Twilio signed: as configured, else as the caller saw it (raw path and query, never re-encoded)."""
        if configured:
            return configured
        scheme, host = request.scheme, request.host
        if self._trust_forwarded:
            # Each proxy appends its own value; the first is what the original caller used.
            scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or scheme
            host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or host
        return f"{scheme}://{host}{request.raw_path}"

    async def _verified_form(self, request: web.Request, configured: str | None) -> list[tuple[str, str]]:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise _Refused(403, "bad_signature", f"missing {SIGNATURE_HEADER} header")
        raw = await read_body(request, MAX_BODY_BYTES)
        if raw is None:
            raise _Refused(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        if request.content_type != FORM_TYPE:
            raise _Refused(400, "bad_request", f"the body must be {FORM_TYPE}")
        form = read_form(raw)
        if form is None:
            raise _Refused(400, "bad_request", "the body is not a valid form")
        if not verify_twilio(self._token, self.signed_url(request, configured), form, signature):
            log.info("twilio: signature refused on %s", request.path)
            raise _Refused(403, "bad_signature", f"{SIGNATURE_HEADER} does not match the URL and parameters")
        return form

    async def inbound(self, request: web.Request) -> web.Response:
        """An inbound text: stored by the receiver before Twilio hears 200, so a failure here makes Twilio retry."""
        try:
            form = await self._verified_form(request, self._public_url)
            sid, sender, to, text = _required(form, "MessageSid", "From", "To", "Body")
            if (too_long := id_refusal("MessageSid", sid)) is not None:
                raise _Refused(400, "bad_request", too_long)  # kept to drop repeats; Twilio's are 34 characters
        except _Refused as refused:
            return refused.response()
        try:
            await self._receiver.receive(InboundSms("twilio", sid, sender, to, text))
        except TransientError as exc:
            log.warning("twilio: could not store text %s from %s yet: %s", sid, mask(sender), exc)
            return _Refused(503, "unavailable", "try again later").response()
        log.info("twilio: text %s from %s received", sid, mask(sender))
        return _twiml()

    async def status(self, request: web.Request) -> web.Response:
        """A status callback: only the final states (delivered, undelivered, failed) are reported."""
        try:
            form = await self._verified_form(request, self._status_url)
            sid, state = _required(form, "MessageSid", "MessageStatus")
        except _Refused as refused:
            return refused.response()
        if state in FINAL_STATUSES:
            code = dict(reversed(form)).get("ErrorCode")
            detail = f"{state} (error {code})" if code else state
            try:
                await self._receiver.delivery_report(sid, delivered=state == "delivered", detail=detail)
            except TransientError as exc:
                log.warning("twilio: could not record the status of %s yet: %s", sid, exc)
                return _Refused(503, "unavailable", "try again later").response()
        return _twiml()


class TwilioGateway:
    """Sends texts through a Twilio-style Messages API. No retries here: the outbox retries with the same key,
    which travels as I-Twilio-Idempotency-Token so a repeat of a send that did go through is not sent again."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        number: str,
        base_url: str,
        status_callback_url: str | None,
        session: aiohttp.ClientSession,
        ca_file: str | None,
    ) -> None:
        self.number = number
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        # Built by hand: aiohttp's BasicAuth is deprecated in newer releases and its replacement missing in older.
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {credentials}"}
        self._status_callback_url = status_callback_url
        self._session = session
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True

    async def send(self, to: str, text: str, *, key: str, first_sent: datetime) -> str:
        """The message sid; TransientError for 429, 5xx and connection trouble, PermanentError for the rest."""
        form = {"To": to, "From": self.number, "Body": text}
        if self._status_callback_url:
            form["StatusCallback"] = self._status_callback_url
        try:
            async with self._session.post(
                self._url,
                data=form,
                headers=self._headers | {IDEMPOTENCY_HEADER: key},
                ssl=self._ssl,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S),
            ) as resp:
                status, headers, raw = resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"Twilio unreachable: {type(exc).__name__}") from exc
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if status in (200, 201):
            sid = body.get("sid")
            if isinstance(sid, str) and sid:
                log.info("twilio: sent %s to %s", sid, mask(to))
                return sid
            # Sent or not, resending with the same idempotency token cannot send it twice.
            raise TransientError(f"Twilio answered {status} without a message sid")
        code, message = body.get("code"), body.get("message")
        reason = (
            f"Twilio answered {status}" + (f" (error {code})" if code else "") + (f": {message}" if message else "")
        )
        # Twilio queues a number's texts itself: its 429 is a retry like a 503's, counted, not a pause of the number.
        error = from_status(status, reason, retry_after=parse_retry_after(headers), throttled=TransientError)
        if code == UNSUBSCRIBED_RECIPIENT and not isinstance(error, TransientError | AuthError):
            # Said in the words the ACS gateway uses, so the delivery log reads the same for both gateways.
            raise PermanentError(f"the recipient opted out (texted STOP): {reason}")
        raise error

    async def close(self) -> None:
        """The session belongs to the caller; the gateway holds nothing else."""
