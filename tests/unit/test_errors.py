"""The one mapping of a peer's HTTP status to our errors, and the message read from an error body."""

from __future__ import annotations

import pytest

from bot.errors import (
    AuthError,
    BridgeError,
    NotFoundError,
    NotInCallError,
    PermanentError,
    ThrottledError,
    TransientError,
    body_message,
    from_status,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (408, TransientError),
        (409, PermanentError),
        (412, PermanentError),
        (429, ThrottledError),
        (500, TransientError),
        (503, TransientError),
        (599, TransientError),
        (302, PermanentError),
    ],
)
def test_each_status_becomes_its_error_with_the_message_as_given(status: int, kind: type[BridgeError]) -> None:
    error = from_status(status, "send SMS: slow down (HTTP 4xx)")
    assert type(error) is kind and str(error) == "send SMS: slow down (HTTP 4xx)"


def test_a_retryable_error_carries_the_peers_wait_and_a_final_one_none() -> None:
    for status in (408, 429, 500, 503):
        error = from_status(status, "x", retry_after=3.0)
        assert isinstance(error, TransientError) and error.retry_after == 3.0
    assert not hasattr(from_status(400, "x", retry_after=3.0), "retry_after")
    wait = from_status(503, "x")
    assert isinstance(wait, TransientError) and wait.retry_after is None


def test_the_caller_says_what_403_404_and_429_mean_to_it() -> None:
    # A meeting thread's 403: out of the call. The call API's 403: a wrong passcode, not a refused token.
    assert type(from_status(403, "x", forbidden=NotInCallError)) is NotInCallError
    assert type(from_status(403, "x", forbidden=PermanentError)) is PermanentError
    assert type(from_status(404, "x", not_found=PermanentError)) is PermanentError
    # A webhook receiver's or Twilio's 429: a counted retry, not a throttle that leaves the try uncounted.
    relaxed = from_status(429, "x", retry_after=2.0, throttled=TransientError)
    assert type(relaxed) is TransientError and relaxed.retry_after == 2.0
    # The choices touch nothing else.
    assert type(from_status(401, "x", forbidden=PermanentError, not_found=PermanentError)) is AuthError
    assert type(from_status(503, "x", throttled=TransientError)) is TransientError


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"error": {"code": "Forbidden", "message": "not in the call"}}', "not in the call"),
        ('{"CommunicationError": {"Code": "403", "Message": "interop refused"}}', "interop refused"),
        ('{"error": "invalid_client", "error_description": "bad secret"}', "bad secret"),
        ('{"error": {"code": "x"}}', None),
        ('{"error": {"message": 5}}', None),
        ("[1, 2]", None),
        ("<html>Bad gateway</html>", None),
        ("", None),
    ],
)
def test_the_message_of_an_error_body(body: str, message: str | None) -> None:
    assert body_message(body) == message
