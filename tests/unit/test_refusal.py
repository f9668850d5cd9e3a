"""The refusal envelope: {"error", "reason"} then any extra fields, its status, and Retry-After in whole seconds."""

from __future__ import annotations

from bot.refusal import refuse


def test_a_refusal_is_json_with_error_then_reason() -> None:
    answer = refuse(400, "bad_request", "text: a message needs non-empty text")
    assert answer.status == 400 and answer.content_type == "application/json" and answer.charset == "utf-8"
    assert answer.body == b'{"error": "bad_request", "reason": "text: a message needs non-empty text"}'
    assert "Retry-After" not in answer.headers


def test_extra_fields_follow_the_reason_and_headers_are_kept() -> None:
    answer = refuse(409, "duplicate_meeting", "already bridged", headers={"Allow": "GET"}, extra={"id": "7"})
    assert answer.body == b'{"error": "duplicate_meeting", "reason": "already bridged", "id": "7"}'
    assert answer.headers["Allow"] == "GET"


def test_retry_after_is_sent_in_whole_seconds_beside_other_headers() -> None:
    answer = refuse(503, "shutting_down", "stopping", retry_after=5, headers={"WWW-Authenticate": "Bearer"})
    assert answer.headers["Retry-After"] == "5" and answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_reason_goes_out_as_ascii_with_escapes() -> None:
    # As the answers before the helper were (aiohttp's json_response): the bytes are ASCII whatever the reason says.
    assert refuse(404, "unknown_meeting", "no meeting 'café'").body == (
        b'{"error": "unknown_meeting", "reason": "no meeting \'caf\\u00e9\'"}'
    )
