"""The bridge's errors (transient ones are retried, permanent ones end a delivery), and how HTTP answers become them."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

MAX_RETRY_AFTER_S = 3600.0
"""A Retry-After beyond an hour is treated as an hour: a peer's typo must not park work for days."""


def _seconds(value: float) -> float | None:
    # "nan" and "inf" parse as floats; neither is a wait.
    return min(MAX_RETRY_AFTER_S, max(0.0, value)) if math.isfinite(value) else None


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from retry-after-ms, x-ms-retry-after-ms or Retry-After (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        try:
            return _seconds(float(lowered[name]) / 1000)
        except (KeyError, ValueError):
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return _seconds(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return _seconds(when.timestamp() - time.time())


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key."""


class SchemaTooNewError(ConfigError):
    """The store was written by a newer version of the bridge: this one would misread it, so it does not start."""


class TransientError(BridgeError):
    """Worth retrying: 429, 5xx, a dropped connection or a timeout."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StaleTokenError(TransientError):
    """The service refused a call leg's token as invalid or expired although the bridge held it current (revoked, or
    a clock apart): the caller drops its cached token and joins again with a newly issued one."""


class ThrottledError(TransientError):
    """ACS answered 429; retry_after holds its Retry-After in seconds when it sent one."""


class PermanentError(BridgeError):
    """Retrying will not help; the delivery ends failed with this reason."""


class NotInCallError(PermanentError):
    """ACS answered 403 on a meeting thread: the identity is not (or no longer) in the meeting call."""


class AuthError(PermanentError):
    """Credentials or a token were refused (401)."""


class NotFoundError(PermanentError):
    """The resource does not exist (404)."""


class MeetingLookupError(PermanentError):
    """A join link, short link or Graph meeting id could not be resolved to a meeting thread."""


def from_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    forbidden: type[PermanentError] = AuthError,
    not_found: type[PermanentError] = NotFoundError,
    throttled: type[TransientError] = ThrottledError,
) -> BridgeError:
    """Our error, saying `message`, for a peer's answer with an error status; every client decides here.

    `forbidden`, `not_found` and `throttled` say what 403, 404 and 429 mean to the caller: on a meeting thread a 403
    is NotInCallError; a 429 is a ThrottledError (the try is not counted as one) only from a provider that paces our
    sends, not from a peer that might answer 429 for ever."""
    if status == 401:
        return AuthError(message)
    if status == 403:
        return forbidden(message)
    if status == 404:
        return not_found(message)
    if status == 429:
        return throttled(message, retry_after)
    if status >= 500 or status == 408:
        return TransientError(message, retry_after)
    return PermanentError(message)


def body_message(text: str) -> str | None:
    """The message of a spec-shaped, interop-shaped or Graph-shaped JSON error body; None for any other body."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key, field in (("error", "message"), ("CommunicationError", "Message")):
        inner = body.get(key)
        if isinstance(inner, dict) and isinstance(inner.get(field), str):
            return str(inner[field])
    if isinstance(body.get("error_description"), str):
        return str(body["error_description"])
    return None
