"""Event Grid chat events: the door's handshake and secret, and a Teams message pushed through without polling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.channels.chat_events import CHAT_EVENTS
from bot.channels.chat_events import PATH as EVENTS_PATH
from bot.config import MeetingConfig, Settings
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_for, wait_for
from tests.support.sandbox import Control

SECRET = "event-door-secret-123"


def _with_events(settings: Settings) -> Settings:
    return settings.model_copy(update={"events": settings.events.model_copy(update={"secret": SecretStr(SECRET)})})


@pytest.fixture
async def setup(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> AsyncIterator[tuple[Bridge, Receiver, dict[str, Any]]]:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code="555111")
    # Polling so slow that only a pushed event can deliver within the test's wait.
    async with bridge_for(info, tmp_path, config, adjust=_with_events, poll_active_s=60.0, poll_idle_s=60.0) as (
        bridge,
        receiver,
        secret,
    ):
        yield bridge, receiver, {"meeting": meeting, "secret": secret}


async def test_pushed_chat_event_delivers_without_waiting_for_a_poll(
    setup: tuple[Bridge, Receiver, dict[str, Any]], control: Control
) -> None:
    bridge, receiver, ctx = setup
    meeting = ctx["meeting"]
    status, _ = await bridge.send("app", ctx["secret"], {"type": "join", "user": {"id": "ann"}, "meeting": "555111"})
    assert status == 202

    async def in_call() -> bool:
        return any(s.state == SessionState.IN_CALL for s in await bridge.store.sessions())

    await wait_for(in_call, what="in call")
    # The reader polled once on start; from now on only an event can make it read again in time.
    sub = await control.ok(
        "POST",
        "/sandbox/v1/event-subscriptions",
        {
            "endpoint": f"{bridge.base}{EVENTS_PATH}?code={SECRET}",
            "eventTypes": list(CHAT_EVENTS),
            "schema": "EventGrid",
        },
    )
    assert sub["id"]

    async def first_poll_done() -> bool:
        return bridge.relay.readers.polls >= 1

    await wait_for(first_poll_done, what="the reader's first poll")
    await control.ok(
        "POST",
        f"/sandbox/v1/meetings/{meeting['id']}/messages",
        {"from": meeting["organizerId"], "html": "<p>pushed</p>"},
    )

    async def delivered() -> list[dict[str, Any]]:
        return [r for r in receiver.of("message", "ann") if r["text"] == "pushed"]

    await wait_for(delivered, limit_s=15, what="pushed message")


async def test_door_refuses_a_wrong_code_and_answers_handshakes(setup: tuple[Bridge, Receiver, dict[str, Any]]) -> None:
    bridge, _, _ = setup
    url = f"{bridge.base}{EVENTS_PATH}"
    handshake = [
        {"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "abc"}}
    ]
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=handshake) as resp:
            assert resp.status == 401
        async with http.post(url + "?code=wrong", json=handshake) as resp:
            assert resp.status == 401
        async with http.post(f"{url}?code={SECRET}", json=handshake) as resp:
            assert resp.status == 200
            assert await resp.json() == {"validationResponse": "abc"}
        async with http.options(
            f"{url}?code={SECRET}", headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
        ) as resp:
            assert resp.status == 200 and resp.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
        async with http.post(f"{url}?code={SECRET}", data=b"\xff not json") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "bad_request"
