"""The bridge's exception hierarchy: transient errors are retried, permanent ones end a delivery with a reason."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key."""


class TransientError(BridgeError):
    """Worth retrying: 429, 5xx, a dropped connection or a timeout."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
