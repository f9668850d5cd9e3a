"""Every door's refusal, the drain's and the admin API's, byte for byte: status, Content-Type, Retry-After, body."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.channels.chat_events import PATH as EVENTS_PATH
from bot.channels.sms.acs import PATH as SMS_EVENTS_PATH
from bot.channels.sms.twilio import INBOUND_PATH
from bot.channels.webhook import sign
from bot.config import AdminSection, MeetingConfig
from bot.drain import DRAIN
from bot.embedded import twilio_on_sandbox
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, bridge_settings, client_for, new_secret
from tests.support.sandbox import Control

TOKEN = "operator-token-for-refusals-0123"
CHAT_SECRET = "chat-events-secret-for-refusals"
SMS_SECRET = "sms-events-secret-for-refusals"
JSON_TYPE = "application/json; charset=utf-8"
JSON_BODY = {"Content-Type": "application/json"}
Seen = tuple[int, str, str | None, bytes]
"""(status, Content-Type, Retry-After, body) as they came over the wire."""


@pytest.fixture
async def bridge(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[tuple[Bridge, str]]:
    meeting = await control.meeting(subject="Refusals")
    secret = new_secret()
    # "slow" has room for one request and then none for seconds: its second is refused with 429.
    slow = client_for(None, secret).model_copy(update={"rate_per_second": 0.5})
    settings = bridge_settings(
        info,
        tmp_path / "bridge",
        clients={"app": client_for(None, secret), "slow": slow},
        meetings=[MeetingConfig(link=meeting["joinWebUrl"], code="515151", name="Refusals")],
        sms={"events_secret": SecretStr(SMS_SECRET)},
    )
    events = settings.events.model_copy(update={"secret": SecretStr(CHAT_SECRET)})
    settings = settings.model_copy(update={"events": events, "admin": AdminSection(token=SecretStr(TOKEN))})
    started = await Bridge(settings).start()
    try:
        yield started, secret
    finally:
        await started.stop()


async def seen(
    bridge: Bridge, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Seen:
    assert bridge.http is not None
    async with bridge.http.request(method, bridge.base + path, data=body, headers=headers or {}) as resp:
        return resp.status, resp.headers["Content-Type"], resp.headers.get("Retry-After"), await resp.read()


def signed(secret: str, body: bytes) -> dict[str, str]:
    return sign(secret, f"msg_{uuid.uuid4().hex}", body.decode())


async def test_the_webhook_door_refuses_in_its_exact_words(bridge: tuple[Bridge, str]) -> None:
    door, secret = bridge
    body = json.dumps({"type": "join", "user": {"id": "ann"}, "meeting": "515151"}).encode()
    assert await seen(door, "POST", "/channels/webhook/nobody", body) == (
        404,
        JSON_TYPE,
        None,
        b'{"error": "unknown_client", "reason": "no webhook client named \'nobody\'"}',
    )
    assert await seen(door, "POST", "/channels/webhook/app", body) == (
        401,
        JSON_TYPE,
        None,
        b'{"error": "bad_signature", "reason": "missing webhook-id, webhook-timestamp or webhook-signature header"}',
    )
    as_xml = signed(secret, body) | {"Content-Type": "application/xml"}
    assert await seen(door, "POST", "/channels/webhook/app", body, as_xml) == (
        415,
        JSON_TYPE,
        None,
        b'{"error": "unsupported_media_type", "reason": "the body must be application/json"}',
    )
    no_text = json.dumps({"type": "message", "user": {"id": "ann"}, "meeting": "515151", "text": " "}).encode()
    assert await seen(door, "POST", "/channels/webhook/app", no_text, signed(secret, no_text)) == (
        400,
        JSON_TYPE,
        None,
        b'{"error": "bad_request", "reason": "text: a message needs non-empty text"}',
    )
    first = await seen(door, "POST", "/channels/webhook/slow", no_text, signed(secret, no_text))
    assert first[0] == 400
    status, content_type, retry_after, answer = await seen(
        door, "POST", "/channels/webhook/slow", no_text, signed(secret, no_text)
    )
    assert (status, content_type, answer) == (
        429,
        JSON_TYPE,
        b'{"error": "rate_limited", "reason": "too many requests"}',
    )
    assert retry_after is not None and re.fullmatch(r"[1-9][0-9]*", retry_after)


async def test_the_event_grid_doors_refuse_in_their_exact_words(bridge: tuple[Bridge, str]) -> None:
    door, _ = bridge
    unauthorized = (401, JSON_TYPE, None, b'{"error": "unauthorized", "reason": "missing or wrong code"}')
    assert await seen(door, "POST", f"{EVENTS_PATH}?code=wrong", b"[]", JSON_BODY) == (unauthorized)
    assert await seen(door, "OPTIONS", f"{SMS_EVENTS_PATH}?code=wrong") == unauthorized
    assert await seen(door, "POST", f"{SMS_EVENTS_PATH}?code={SMS_SECRET}", b"[1]", JSON_BODY) == (
        400,
        JSON_TYPE,
        None,
        b'{"error": "bad_request", "reason": "an event must be a JSON object"}',
    )
    assert await seen(door, "POST", f"{EVENTS_PATH}?code={CHAT_SECRET}", b"{", JSON_BODY) == (
        400,
        JSON_TYPE,
        None,
        b'{"error": "bad_request", "reason": "the body is not UTF-8 JSON"}',
    )


async def test_the_admin_api_and_the_console_refuse_in_their_exact_words(bridge: tuple[Bridge, str]) -> None:
    door, _ = bridge
    assert await seen(door, "GET", "/api/v1/meetings", headers={"Authorization": "Bearer wrong"}) == (
        401,
        JSON_TYPE,
        None,
        b'{"error": "unauthorized", "reason": "the bearer token is not the operator token"}',
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert await seen(door, "GET", "/api/v1/meetings/nope", headers=auth) == (
        404,
        JSON_TYPE,
        None,
        b'{"error": "not_found", "reason": "no meeting \'nope\'"}',
    )
    bad_field = json.dumps({"link": "https://teams.microsoft.com/l/x", "colour": "red"}).encode()
    status, content_type, retry_after, body = await seen(door, "POST", "/api/v1/meetings", bad_field, auth | JSON_BODY)
    # Extra fields follow error and reason.
    assert (status, content_type, retry_after) == (400, JSON_TYPE, None)
    assert body == b'{"error": "bad_request", "reason": "colour: not a field of a new meeting", "field": "colour"}'
    assert await seen(door, "GET", "/console/events") == (
        401,
        JSON_TYPE,
        None,
        b'{"error": "unauthorized", "reason": "sign in at /console first"}',
    )


async def test_a_draining_bridge_refuses_intake_in_its_exact_words(bridge: tuple[Bridge, str]) -> None:
    door, secret = bridge
    door.app[DRAIN].begin("the bridge is stopping")
    body = json.dumps({"type": "join", "user": {"id": "ann"}, "meeting": "515151"}).encode()
    expected = (503, JSON_TYPE, "5", b'{"error": "shutting_down", "reason": "the bridge is stopping"}')
    assert await seen(door, "POST", "/channels/webhook/app", body, signed(secret, body)) == expected
    assert await seen(door, "DELETE", "/api/v1/meetings/1", headers={"Authorization": f"Bearer {TOKEN}"}) == expected


async def test_the_twilio_door_refuses_in_its_exact_words(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    meeting = await control.meeting(subject="Refusals by text")
    config = MeetingConfig(link=meeting["joinWebUrl"], code="525252", name="Refusals by text")
    settings = bridge_settings(info, tmp_path / "bridge", clients={}, meetings=[config], sms={"gateway": "twilio"})
    door = await Bridge(await twilio_on_sandbox(settings, info)).start()
    try:
        assert await seen(door, "POST", INBOUND_PATH, b"Body=hi") == (
            403,
            JSON_TYPE,
            None,
            b'{"error": "bad_signature", "reason": "missing X-Twilio-Signature header"}',
        )
    finally:
        await door.stop()
