"""The admin API's plumbing: bearer or console-cookie auth, JSON errors for every 4xx, parsing, time stamps."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from aiohttp import web
from pydantic import ValidationError

from ..channels.bodies import declares_json
from ..config import SETTINGS
from ..refusal import refuse
from .console_auth import refusal, session_of
from .throttle import try_token

PREFIX = "/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
STARTED: web.AppKey[float] = web.AppKey("admin_started")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ERRORS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
_ERRORS |= {409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "unprocessable", 503: "unavailable"}
_ERRORS |= {429: "too_many_attempts"}


class ApiError(Exception):
    """Answered as {"error", "reason"} (plus any extra fields) with its status."""

    def __init__(self, status: int, reason: str, error: str | None = None, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.reason, self.extra = status, reason, extra
        self.error = error or _ERRORS.get(status, "error")

    def response(self, headers: Mapping[str, str] | None = None) -> web.Response:
        return refuse(self.status, self.error, self.reason, headers=headers, extra=self.extra)


def not_found(what: str, ref: str) -> NoReturn:
    raise ApiError(404, f"no {what} {ref!r}")


def _unauthorized(request: web.Request) -> web.Response | None:
    """Why the request may not use the API, or None when it carries the operators' token (or comes from a signed-in
    console)."""
    token = request.app[SETTINGS].admin.token
    if token is None:  # the routes exist only with a token; this is a second lock, not the first
        return ApiError(404, "the admin API is off").response()
    if "Authorization" not in request.headers:
        # The console's scripts: signed in by its session cookie, and a change must carry its CSRF token.
        session = session_of(request)
        if session is not None:
            why = refusal(request, session)
            return None if why is None else ApiError(403, why).response()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        reason = "send the operator token as Authorization: Bearer <token>"
        return ApiError(401, reason).response({"WWW-Authenticate": "Bearer"})
    # Compared in constant time, on bytes (see token_matches); a peer that guessed wrong too often waits.
    attempt = try_token(request, given, "api")
    if attempt.retry_after:
        reason = f"too many wrong tokens from this address; try again in {attempt.retry_after} s"
        return ApiError(429, reason, error="too_many_attempts").response({"Retry-After": str(attempt.retry_after)})
    if not attempt.accepted:
        reason = "the bearer token is not the operator token"
        return ApiError(401, reason).response({"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return None


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api/v1 only: check the token (the OpenAPI document is public), answer every error as JSON."""
    if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    if not (request.method in ("GET", "HEAD") and request.path == OPENAPI_PATH):
        refusal = _unauthorized(request)
        if refusal is not None:
            return refusal
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        # aiohttp's own 404, 405 and 413 come as plain text; an API client expects JSON everywhere.
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return ApiError(exc.status, exc.reason.lower() if exc.reason else "refused").response(headers)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx saying what is wrong with it."""
    raw = await request.read()  # bounded by the app's client_max_size: beyond it aiohttp raises its 413
    if not declares_json(request):
        raise ApiError(415, "body: must be application/json")
    try:
        # Decoded first: from bytes, json.loads would also take UTF-16 and UTF-32, which JSON on the wire is not.
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, f"body: not valid JSON ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "body: must be a JSON object")
    return data


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def validation_error(exc: ValidationError, names: Mapping[str, str]) -> ApiError:
    """A 400 naming the offending field as the client spelled it (names: python name → JSON name)."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    message = str(err["msg"]).removeprefix("Value error, ")
    field = names.get(loc[0], loc[0]) if loc else None
    if field is None:
        # Model-level checks name the field at the start of the message ("link: ...") or not at all.
        head = message.partition(":")[0]
        field = names.get(head) if head in names else None
    for python, json_name in names.items():
        message = message.replace(python, json_name)
    where = ".".join([field, *loc[1:]]) if field else "body"
    if field and message.startswith(f"{field}: "):
        message = message[len(field) + 2 :]
    return ApiError(400, f"{where}: {message}", field=field)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_time(name: str, value: str) -> datetime:
    """ISO 8601; a time without a zone is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
        # In UTC now: a time at the edge of the calendar cannot be moved there, and fails here rather than later.
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, f"{name}: not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)") from exc


def parse_int(name: str, value: str, low: int, high: int) -> int:
    # Digits only: int() would also take " 5", "+5", "1_000" and other scripts' digits.
    if not (value.isascii() and value.isdigit()):
        raise ApiError(400, f"{name}: not an integer")
    number = int(value) if len(value) <= 18 else high + 1  # int() refuses over 4300 digits: out of range anyway
    if not low <= number <= high:
        raise ApiError(400, f"{name}: must be between {low} and {high}")
    return number


def uptime(app: web.Application) -> float:
    return round(time.monotonic() - app[STARTED], 1)
