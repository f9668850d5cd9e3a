"""A backlog for one thread merges by sender: each send carries all of one sender's waiting messages, in order,
passing over others' in between; a thread paced to raised limits, or to none, sends as fast as it can."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import MeetingConfig
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, bridge_for, wait_for
from tests.support.sandbox import Control

CODE = "730001"


async def _thread(control: Control, meeting: dict[str, Any]) -> list[list[str]]:
    """Each chat message of the thread as its lines, oldest first."""
    body = await control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}/messages")
    return [m["content"]["message"].split("<br>") for m in body["value"] if m["type"] in ("text", "html")]


async def _join(bridge: Bridge, secret: str, user: str) -> None:
    status, _ = await bridge.send("app", secret, {"type": "join", "user": {"id": user}, "meeting": CODE})
    assert status == 202

    async def in_call() -> bool:
        mine = [s for s in await bridge.store.sessions() if s.user_id == f"webhook:app/{user}"]
        return bool(mine) and mine[-1].state == SessionState.IN_CALL

    await wait_for(in_call, what=f"{user} in the call")


async def _say(bridge: Bridge, secret: str, user: str, text: str) -> None:
    event = {"type": "message", "user": {"id": user}, "meeting": CODE, "text": text}
    assert (await bridge.send("app", secret, event))[0] == 202


async def test_a_backlog_merges_by_sender_in_each_senders_order(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE)
    # One send per 3 s: whatever arrives meanwhile waits, and a backlog builds.
    async with bridge_for(info, tmp_path, config, thread_send_limits=[[1, 3.0]]) as (bridge, _, secret):
        for user in ("ann", "bob"):
            await _join(bridge, secret, user)
        await _say(bridge, secret, "ann", "ann 0")

        async def first_sent() -> list[list[str]]:
            return await _thread(control, meeting)

        assert await wait_for(first_sent, what="the first message") == [["ann 0"]]
        for n in (1, 2, 3):
            await _say(bridge, secret, "ann", f"ann {n}")
            await _say(bridge, secret, "bob", f"bob {n}")

        async def all_sent() -> list[list[str]]:
            found = await _thread(control, meeting)
            return found if len(found) >= 3 else []

        found = await wait_for(all_sent, limit_s=30, what="the backlog sent")
        assert found == [["ann 0"], ["ann 1", "ann 2", "ann 3"], ["bob 1", "bob 2", "bob 3"]]


async def test_with_no_limits_a_thread_is_not_paced(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    await control.ok("PUT", "/sandbox/v1/limits", {"enabled": False})
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE)
    async with bridge_for(info, tmp_path, config, thread_send_limits=[], merge_backlog=1000) as (bridge, _, secret):
        await _join(bridge, secret, "ann")
        texts = [f"ann {n}" for n in range(40)]
        for text in texts:
            await _say(bridge, secret, "ann", text)

        async def all_sent() -> list[str]:
            lines = [line for message in await _thread(control, meeting) for line in message]
            return lines if len(lines) >= len(texts) else []

        # ACS's own limits would hold 30 of these back for a minute.
        assert await wait_for(all_sent, limit_s=15, what="40 sends") == texts
        assert len(await _thread(control, meeting)) == len(texts)  # merge_backlog not reached: one send each


async def test_a_paced_thread_merges_even_the_last_few(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE)
    async with bridge_for(info, tmp_path, config, thread_send_limits=[[1, 3.0]]) as (bridge, _, secret):
        await _join(bridge, secret, "ann")
        await _say(bridge, secret, "ann", "ann 0")

        async def first_sent() -> list[list[str]]:
            return await _thread(control, meeting)

        await wait_for(first_sent, what="the first message")
        # Two waiting, fewer than merge_backlog (3), but the pacer holds them: one send, not two.
        await _say(bridge, secret, "ann", "ann 1")
        await _say(bridge, secret, "ann", "ann 2")

        async def both_sent() -> list[list[str]]:
            found = await _thread(control, meeting)
            return found if sum(len(m) for m in found) >= 3 else []

        assert await wait_for(both_sent, limit_s=15, what="the held two") == [["ann 0"], ["ann 1", "ann 2"]]
