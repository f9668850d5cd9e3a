"""Meetings given as a short link or a Graph id (resolved through the sandbox's Graph), dropped legs, inactivity."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import MeetingConfig
from bot.models import SessionState
from bot.relay import presence
from bot.sandbox import SandboxInfo
from tests.support.acs import bearer
from tests.support.bridge import Bridge, bridge_for, wait_for
from tests.support.sandbox import Control

CODE = "777000"


async def join_and_say(bridge: Bridge, secret: str, user: str, text: str) -> None:
    status, _ = await bridge.send("app", secret, {"type": "join", "user": {"id": user}, "meeting": CODE})
    assert status == 202

    async def in_call() -> bool:
        return any(s.state == SessionState.IN_CALL for s in await bridge.store.sessions())

    await wait_for(in_call, what="in call")
    status, _ = await bridge.send(
        "app", secret, {"type": "message", "user": {"id": user}, "meeting": CODE, "text": text}
    )
    assert status == 202


async def thread_texts(control: Control, meeting_id: str) -> list[str]:
    body = await control.ok("GET", f"/sandbox/v1/meetings/{meeting_id}/messages")
    return [m["content"]["message"] for m in body["value"] if m["type"] in ("text", "html")]


async def test_short_link_meeting_gets_its_thread_from_graph(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    meeting = await control.meeting()
    organizer = meeting["organizerId"].removeprefix("8:orgid:")
    config = MeetingConfig(link=meeting["shortUrl"], organizer_id=organizer, code=CODE)
    async with bridge_for(info, tmp_path, config) as (bridge, _, secret):
        [stored] = await bridge.store.list_meetings()
        # Known before anyone joined: the short link holds no thread id, Graph does.
        assert stored.thread_id == meeting["threadId"]
        assert stored.name == meeting["subject"]
        await join_and_say(bridge, secret, "ann", "via the short link")

        async def posted() -> bool:
            return "via the short link" in await thread_texts(control, meeting["id"])

        await wait_for(posted, what="message in the thread")


async def test_graph_meeting_id_is_resolved_with_its_organizer(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    meeting = await control.meeting()
    organizer = meeting["organizerId"].removeprefix("8:orgid:")
    config = MeetingConfig(graph_meeting_id=meeting["id"], organizer_id=organizer, code=CODE)
    async with bridge_for(info, tmp_path, config) as (bridge, _, secret):
        [stored] = await bridge.store.list_meetings()
        assert stored.thread_id == meeting["threadId"] and stored.link == meeting["joinWebUrl"]
        await join_and_say(bridge, secret, "ann", "via graph")

        async def posted() -> bool:
            return "via graph" in await thread_texts(control, meeting["id"])

        await wait_for(posted, what="message in the thread")


async def drop_leg_and_wait_for_a_new_one(bridge: Bridge, control: Control) -> None:
    """The only session's call leg hangs up without the bridge asking, as a crashed calling client would; the
    bridge must join again (never giving the session up) until it is back in the call on a new leg."""
    [session] = await bridge.store.sessions()
    assert session.state == SessionState.IN_CALL and session.call_id and session.identity_id
    token = await bridge.relay.broker.token(session.identity_id)
    status, _ = await control.call("DELETE", f"/sandbox/v1/calls/{session.call_id}", headers=bearer(token))
    assert status == 204

    async def rejoined() -> bool:
        [fresh] = await bridge.store.sessions()
        assert fresh.state != SessionState.FAILED, fresh
        return fresh.state == SessionState.IN_CALL and fresh.call_id != session.call_id

    await wait_for(rejoined, what="a new call leg")


async def test_a_dropped_leg_is_joined_again(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE)
    async with bridge_for(info, tmp_path, config) as (bridge, _, secret):
        await join_and_say(bridge, secret, "ann", "before the drop")
        await drop_leg_and_wait_for_a_new_one(bridge, control)
        status, _ = await bridge.send(
            "app", secret, {"type": "message", "user": {"id": "ann"}, "meeting": CODE, "text": "after the drop"}
        )
        assert status == 202

        async def posted() -> bool:
            return "after the drop" in await thread_texts(control, meeting["id"])

        await wait_for(posted, what="message after the re-join")


async def test_an_inactive_user_is_taken_out_and_told(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE)
    async with bridge_for(info, tmp_path, config, inactivity_timeout_s=1.0) as (bridge, receiver, secret):
        await join_and_say(bridge, secret, "ann", "then silence")

        async def left() -> bool:
            [session] = await bridge.store.sessions()
            return session.state == SessionState.LEFT and session.reason == "inactive"

        await wait_for(left, what="inactivity")

        async def told() -> bool:
            return any("inactive" in n["text"] for n in receiver.of("notice", "ann"))

        await wait_for(told, what="inactivity notice")
        roster = (await control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}"))["roster"]
        assert not [p for p in roster["inCall"] if p.get("kind") == "acs"]


async def test_a_leg_that_recovers_between_drops_is_never_given_up(
    control: Control, info: SandboxInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every connection counts as a recovery here, so only drops in a row could exhaust MAX_REJOINS.
    monkeypatch.setattr(presence, "HEALTHY_AFTER_S", 0.0)
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE)
    async with bridge_for(info, tmp_path, config) as (bridge, _, secret):
        await join_and_say(bridge, secret, "ann", "before the drops")
        for _ in range(presence.MAX_REJOINS + 2):
            await drop_leg_and_wait_for_a_new_one(bridge, control)
