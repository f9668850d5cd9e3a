"""Inbound bodies, before anything parses them: read whole up to a size limit, the media type they declare, and
the size of the provider ids the doors keep to drop repeats."""

from __future__ import annotations

from aiohttp import web

MAX_ID_BYTES = 256
"""The longest provider id a door keeps (webhook-id, SMS message ids, Event Grid event ids). Each is stored to drop
repeats; real ones are short (a Standard Webhooks id, a Twilio SID of 34 characters, a GUID), and without a bound
a client within its rate limit could store gigabytes a day."""
JSON_TYPES = frozenset({"application/json", "application/octet-stream", "text/plain"})
"""Declared types a JSON door reads: JSON, bytes of no stated kind (what a client sends when it names none), and plain
text (what HTTP libraries label a string body with, aiohttp's among them)."""


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None when it is larger than `limit` bytes (said by Content-Length or found reading).
    Bounded in time by the server (bot/server.py): a body slower than http.body_timeout_s raises BodyTimeout
    here, which the server answers 408."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    # StreamReader.read(n) returns what has arrived so far, not n bytes: a body that comes in several packets
    # takes several reads, or it would be parsed (and its signature checked) cut short.
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def declares_json(request: web.Request) -> bool:
    """Whether the Content-Type lets a JSON door read the body: JSON, any `+json` type (CloudEvents), plain text, or
    none given. A form, multipart, XML or other body is refused even when it parses as JSON: it was not sent as JSON."""
    kind = request.content_type.lower()
    return kind in JSON_TYPES or kind.endswith("+json")


def id_refusal(name: str, value: str) -> str | None:
    """Why a provider id is not kept, or None: longer than MAX_ID_BYTES in UTF-8 (as received, for header bytes)."""
    if len(value.encode("utf-8", "surrogateescape")) > MAX_ID_BYTES:
        return f"{name}: longer than {MAX_ID_BYTES} bytes"
    return None
