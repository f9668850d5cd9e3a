"""End to end: webhook users in a sandbox Teams meeting through the real bridge, with the real Azure SDKs, on each
store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.communication.identity import CommunicationUserIdentifier
from azure.core.exceptions import ResourceNotFoundError

from bot.models import DeliveryState, Direction, SessionState
from bot.sandbox import SandboxInfo
from bot.store import StoreUrl
from tests.support.acs import identity_client
from tests.support.bridge import wait_for
from tests.support.sandbox import Control
from tests.support.webhook import CODE, World, make_world


@pytest.fixture
async def world(control: Control, info: SandboxInfo, tmp_path: Path, store_url: StoreUrl) -> AsyncIterator[World]:
    # On each backend: the whole bridge is proven on PostgreSQL as on SQLite.
    async for w in make_world(control, info, tmp_path, store_url=store_url):
        yield w


async def test_join_send_and_receive_round_trip(world: World) -> None:
    status, body = await world.send("ann", "join")
    assert status == 202 and body["id"].startswith("session-")
    await world.until_state("ann", SessionState.IN_CALL)
    status, body = await world.send("ann", text="hello <b>Teams</b>\nsecond line")
    assert status == 202 and body["status"] == "queued"

    async def posted() -> list[tuple[str, str]]:
        return [t for t in await world.texts() if "hello" in t[1]]

    [(name, html)] = await wait_for(posted, what="message in the thread")
    assert name == "Ann (app)"
    assert html == "hello &lt;b&gt;Teams&lt;/b&gt;<br>second line"

    organizer = world.meeting["organizerId"]
    await world.control.ok(
        "POST",
        f"/sandbox/v1/meetings/{world.meeting['id']}/messages",
        {"from": organizer, "html": '<p>Welcome <at id="0">Ann</at>, see <a href="https://x.test/a">the doc</a></p>'},
    )

    async def delivered() -> list[dict[str, Any]]:
        return world.receiver.of("message", "ann")

    [msg] = await wait_for(delivered, what="Teams message delivered to ann")
    assert msg["text"] == "Welcome @Ann, see the doc (https://x.test/a)"
    assert msg["from"] == {"displayName": "Megan", "kind": "teams"}
    assert msg["meeting"] == CODE
    notices = [n["text"] for n in world.receiver.of("notice", "ann")]
    assert any("in the meeting chat" in n for n in notices)
    # Our own message never comes back to us.
    assert not [r for r in world.receiver.received if "hello" in r.get("text", "")]


async def test_duplicate_webhook_id_is_answered_the_same_and_sent_once(world: World) -> None:
    await world.send("bob", "join")
    await world.until_state("bob", SessionState.IN_CALL)
    first = await world.send("bob", text="only once", webhook_id="msg_fixed")
    again = await world.send("bob", text="only once", webhook_id="msg_fixed")
    assert first == again and first[0] == 202

    async def delivered() -> bool:
        rows = await world.bridge.store.deliveries(direction=Direction.INBOUND)
        return bool(rows) and all(r.state == DeliveryState.DELIVERED for r in rows)

    await wait_for(delivered, what="delivery")
    assert [t for t in await world.texts() if t[1] == "only once"] == [("Bob (app)", "only once")]


async def test_message_without_session_gets_a_clear_409(world: World) -> None:
    status, body = await world.send("carol", text="hi")
    assert status == 409
    assert body["error"] == "not_in_call" and body["state"] == "none"


async def test_forget_over_the_webhook_deletes_identity_and_stored_messages(world: World) -> None:
    await world.send("dora", "join")
    await world.until_state("dora", SessionState.IN_CALL)
    status, _ = await world.send("dora", text="remember me")
    assert status == 202
    user = await world.bridge.store.get_user("webhook:app/dora")
    assert user is not None and user.identity_id is not None
    status, body = await world.bridge.send("app", world.secret, {"type": "forget", "user": {"id": "dora"}})
    assert (status, body) == (202, {"status": "forgotten"})
    assert await world.bridge.store.get_user("webhook:app/dora") is None
    assert await world.bridge.store.deliveries(user_id="webhook:app/dora") == []
    roster = (await world.control.ok("GET", f"/sandbox/v1/meetings/{world.meeting['id']}"))["roster"]
    assert user.identity_id not in [p.get("identity") for p in roster["inCall"]]
    async with identity_client(world.control.info) as identities:
        with pytest.raises(ResourceNotFoundError):
            await identities.get_token(CommunicationUserIdentifier(user.identity_id), scopes=["chat"])
    # The identity is gone from ACS: issuing it a token fails.
    status, _ = await world.send("dora", text="after forgetting")
    assert status == 409


async def test_missing_meeting_is_a_400_naming_the_field(world: World) -> None:
    status, body = await world.bridge.send("app", world.secret, {"type": "join", "user": {"id": "erin"}})
    assert status == 400 and body["reason"].startswith("meeting:")


async def test_a_call_report_to_a_bridge_that_holds_its_calls_is_refused_and_changes_nothing(world: World) -> None:
    await world.send("fay", "join")
    await world.until_state("fay", SessionState.IN_CALL)
    event = {"type": "call", "user": {"id": "fay"}, "meeting": CODE, "state": "removed"}
    status, body = await world.bridge.send("app", world.secret, event)
    assert status == 409 and body["error"] == "not_reported", body
    assert "calls.connector is not client_reported" in body["reason"]
    status, body = await world.send("fay", text="still in")
    assert status == 202 and body["state"] == "in_call", body


async def test_a_message_posted_while_a_read_waits_reaches_whoever_came_into_the_call_meanwhile(world: World) -> None:
    """The reader learns who is in the call, then reads; a slow read returns a message posted after someone else
    came into the call, and that one gets it too (a leg joined again after a crash is such a someone)."""
    await world.send("gus", "join")
    await world.until_state("gus", SessionState.IN_CALL)
    path, organizer = f"/sandbox/v1/meetings/{world.meeting['id']}/messages", world.meeting["organizerId"]
    # The one read after the next news waits long enough for a join and a post to happen while it waits.
    rule = {"method": "GET", "path": "/chat/threads/*/messages", "action": "delay", "delayMs": 6000, "count": 1}

    async def fired() -> bool:
        rules = (await world.control.ok("GET", "/sandbox/v1/faults"))["rules"]
        return bool(rules[0]["fired"])

    await world.control.ok("POST", path, {"from": organizer, "html": "<p>first news</p>"})

    async def gus_has(text: str) -> bool:
        return text in [m["text"] for m in world.receiver.of("message", "gus")]

    await wait_for(lambda: gus_has("first news"), what="the first news read")
    # The news makes the reader look at who is in the call again before its next read: that read is delayed.
    await world.control.ok("PUT", "/sandbox/v1/faults", {"rules": [rule]})
    await wait_for(fired, what="the next read to wait")
    await world.send("hal", "join")
    await world.until_state("hal", SessionState.IN_CALL)
    await world.control.ok("POST", path, {"from": organizer, "html": "<p>while the read waited</p>"})
    await wait_for(lambda: gus_has("while the read waited"), what="the delayed read's message")

    async def hal_has() -> bool:
        return "while the read waited" in [m["text"] for m in world.receiver.of("message", "hal")]

    await wait_for(hal_has, what="hal to get the message posted after he came in")
