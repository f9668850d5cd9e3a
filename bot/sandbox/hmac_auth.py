"""Verifies ACS's HMAC-SHA256 request signatures (identity and SMS APIs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import parsedate_to_datetime
from typing import NoReturn
from urllib.parse import unquote

from aiohttp import web

from .errors import unauthorized
from .util import now

MAX_CLOCK_SKEW_S = 15 * 60


def _fail(reason: str) -> NoReturn:
    raise unauthorized(f"HMAC authentication failed: {reason}.")


def verify_hmac(request: web.Request, body: bytes, access_key: bytes) -> None:
    """Raise 401 unless the request carries a valid signature by the access key over this exact request."""
    auth = request.headers.get("Authorization", "")
    date = request.headers.get("x-ms-date") or request.headers.get("Date")
    content_hash = request.headers.get("x-ms-content-sha256")
    if not auth.startswith("HMAC-SHA256 "):
        _fail("missing HMAC-SHA256 Authorization header")
    if not date or content_hash is None:
        _fail("missing x-ms-date or x-ms-content-sha256 header")
    params = dict(part.partition("=")[::2] for part in auth[len("HMAC-SHA256 ") :].split("&"))
    signed_headers = params.get("SignedHeaders", "").lower().split(";")
    signature = params.get("Signature", "")
    if signed_headers != ["x-ms-date", "host", "x-ms-content-sha256"]:
        _fail("SignedHeaders must be x-ms-date;host;x-ms-content-sha256")
    try:
        sent_at = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        _fail("x-ms-date is not an RFC 1123 date")
    if abs(now() - sent_at) > MAX_CLOCK_SKEW_S:
        _fail("x-ms-date is more than 15 minutes away from the server's time")
    expected_hash = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    if not hmac.compare_digest(expected_hash, content_hash):
        _fail("x-ms-content-sha256 does not match the body")
    # Clients sign the path either as sent or percent-decoded (the async SDKs decode it): accept both.
    raw = request.raw_path
    candidates = dict.fromkeys([raw, unquote(raw), str(request.rel_url)])
    for path_and_query in candidates:
        to_sign = f"{request.method.upper()}\n{path_and_query}\n{date};{request.host};{content_hash}"
        digest = hmac.new(access_key, to_sign.encode("utf-8"), hashlib.sha256).digest()
        if hmac.compare_digest(base64.b64encode(digest).decode("ascii"), signature):
            return
    _fail("signature does not match")
