"""End to end on PostgreSQL: the bridge rides out a database restart in the middle of traffic. Doors answer 503 with
Retry-After while it cannot store; nothing acknowledged is lost or doubled; work resumes by itself; the outage is
logged once when it starts and once when it ends."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.channels.webhook import sign
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import wait_for
from tests.support.postgres import PostgresServer
from tests.support.sandbox import Control
from tests.support.webhook import CODE, World, make_world

MESSAGES = 24
DOWN_S = 3.0


@pytest.fixture
async def world(
    control: Control, info: SandboxInfo, tmp_path: Path, own_postgres: PostgresServer
) -> AsyncIterator[World]:
    async for w in make_world(control, info, tmp_path, store_url=await own_postgres.create_database()):
        yield w


async def post(world: World, webhook_id: str, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    payload = json.dumps(event)
    headers = sign(world.secret, webhook_id, payload)
    assert world.bridge.http is not None
    url = f"{world.bridge.base}/channels/webhook/app"
    async with world.bridge.http.post(url, data=payload, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def send_until_taken(world: World, text: str, refusals: list[dict[str, Any]]) -> None:
    """A sender as the webhook contract asks for one: the same webhook id again after each 503's Retry-After."""
    webhook_id = f"msg_{uuid.uuid4().hex}"
    event = {"type": "message", "user": {"id": "ann", "displayName": "Ann"}, "meeting": CODE, "text": text}
    for _ in range(40):  # bounded: 40 refusals of 0.5-5 s each
        status, headers, body = await post(world, webhook_id, event)
        if status == 202:
            return
        assert status == 503, (status, body)
        refusals.append({"retry_after": headers.get("Retry-After"), **body})
        # Honoured, but shortened: the test need not wait out the whole hint each time.
        await asyncio.sleep(min(float(headers["Retry-After"]), 0.5))
    raise AssertionError(f"{text} was never taken")


async def test_a_database_restart_mid_traffic_loses_and_doubles_nothing(
    world: World, own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.store")
    status, _ = await world.send("ann", "join")
    assert status == 202
    await world.until_state("ann", SessionState.IN_CALL)
    refusals: list[dict[str, Any]] = []

    async def traffic() -> None:
        for n in range(MESSAGES):
            await send_until_taken(world, f"message {n:02d}", refusals)
            await asyncio.sleep(0.1)

    async def restart() -> None:
        async def sent_some() -> bool:
            return sum("message" in t for _, t in await world.texts()) >= MESSAGES // 4

        await wait_for(sent_some, limit_s=60, what="the first messages in the thread")
        await own_postgres.restart(down_s=DOWN_S)

    sender = asyncio.ensure_future(traffic())
    await restart()
    # A message from Teams while the bridge is still finding its way back: its reader picks it up.
    organizer = world.meeting["organizerId"]
    await world.control.ok(
        "POST",
        f"/sandbox/v1/meetings/{world.meeting['id']}/messages",
        {"from": organizer, "html": "<p>still here?</p>"},
    )
    await asyncio.wait_for(sender, timeout=180)

    async def all_in_the_thread() -> list[str] | None:
        # The backlog that built up while the database was away goes out merged: one send, a line each.
        texts = [line for _, t in await world.texts() if t.startswith("message") for line in t.split("<br>")]
        return texts if len(texts) >= MESSAGES else None

    texts = await wait_for(all_in_the_thread, limit_s=90, what="every acknowledged message in the thread")
    assert texts == [f"message {n:02d}" for n in range(MESSAGES)]  # each once, in order

    async def teams_message_delivered() -> list[dict[str, Any]]:
        return [m for m in world.receiver.of("message", "ann") if m["text"] == "still here?"]

    assert len(await wait_for(teams_message_delivered, limit_s=60, what="the Teams message out to ann")) == 1
    # The doors were refused while the database was away, each time with the envelope and a Retry-After.
    assert refusals, "the restart fell between two messages: no door was refused"
    assert {(r["error"], r["retry_after"]) for r in refusals} == {("store_unavailable", "5")}
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.store.outage" and r.levelno >= logging.INFO]
    assert len(lines) == 2 and "is unavailable" in lines[0] and "available again" in lines[1], lines
    assert own_postgres.password not in caplog.text
