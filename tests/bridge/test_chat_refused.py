"""Chat refused while in the call, end to end: the meeting's chat answers 403 though the call leg is connected. The
user is told once, messages are held and delivered once it clears (or failed with the reason after the hold), and
operators see it in the session, the status, the metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.config import AdminSection, MeetingConfig, Settings
from bot.models import DeliveryState, Direction, SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_for, wait_for
from tests.support.sandbox import Control

CODE = "616161"
TOKEN = "operator-token-for-tests"


@dataclass
class Meeting:
    control: Control
    bridge: Bridge
    receiver: Receiver
    secret: str
    sandbox: dict[str, Any]

    async def send(self, kind: str, text: str | None = None) -> tuple[int, dict[str, Any]]:
        event: dict[str, Any] = {"type": kind, "user": {"id": "ann", "displayName": "Ann"}, "meeting": CODE}
        if text is not None:
            event["text"] = text
        return await self.bridge.send("app", self.secret, event)

    async def guest_chat(self, enabled: bool) -> None:
        await self.control.ok("PUT", f"/sandbox/v1/meetings/{self.sandbox['id']}/guest-chat", {"enabled": enabled})

    async def thread_texts(self) -> list[str]:
        thread = await self.control.ok("GET", f"/sandbox/v1/meetings/{self.sandbox['id']}/messages")
        return [m["content"]["message"] for m in thread["value"] if m["type"] in ("text", "html")]

    def notices(self) -> list[str]:
        return [n["text"] for n in self.receiver.of("notice", "ann")]

    async def session(self) -> Any:
        [session] = [s for s in await self.bridge.store.sessions() if s.state == SessionState.IN_CALL]
        return session

    async def status(self) -> dict[str, Any]:
        assert self.bridge.http is not None
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.bridge.http.get(f"{self.bridge.base}/api/v1/status", headers=headers) as resp:
            assert resp.status == 200
            return dict(await resp.json())

    async def gauge(self) -> str:
        assert self.bridge.http is not None
        async with self.bridge.http.get(f"{self.bridge.base}/metrics") as resp:
            text = await resp.text()
        return "\n".join(line for line in text.splitlines() if line.startswith("bridge_chat_refused{"))


def with_admin(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin": AdminSection(token=SecretStr(TOKEN))})


@pytest.fixture
def hold_s() -> float:
    return 60.0


@pytest.fixture
async def meeting(control: Control, info: SandboxInfo, tmp_path: Path, hold_s: float) -> AsyncIterator[Meeting]:
    sandbox = await control.meeting()
    config = MeetingConfig(link=sandbox["joinWebUrl"], code=CODE, name="Weekly sync")
    relay = {"hold_refused_s": hold_s, "probe_refused_s": 0.2}
    async with bridge_for(info, tmp_path, config, adjust=with_admin, **relay) as (bridge, receiver, secret):
        m = Meeting(control, bridge, receiver, secret, sandbox)
        assert (await m.send("join"))[0] == 202

        async def in_call() -> bool:
            return any(s.state == SessionState.IN_CALL for s in await bridge.store.sessions())

        await wait_for(in_call, what="ann in the call")
        yield m


async def refused(m: Meeting) -> Any:
    async def marked() -> Any:
        session = await m.session()
        return session if session.condition == "chat_refused" else None

    return await wait_for(marked, what="the session marked chat_refused")


async def test_refused_chat_is_told_once_held_and_delivered_when_it_clears(meeting: Meeting) -> None:
    m = meeting
    await m.guest_chat(False)
    assert (await m.send("message", "one"))[0] == 202
    session = await refused(m)
    assert "permission" in session.condition_reason and session.state == SessionState.IN_CALL
    assert (await m.send("message", "two"))[0] == 202
    organizer = m.sandbox["organizerId"]
    html = {"from": organizer, "html": "<p>can anyone hear me?</p>"}
    await m.control.ok("POST", f"/sandbox/v1/meetings/{m.sandbox['id']}/messages", html)

    async def told() -> list[str]:
        return [n for n in m.notices() if "does not accept guest messages" in n]

    [notice] = await wait_for(told, what="the refusal notice")
    assert "Weekly sync" in notice and "1 minutes" not in notice and "kept for up to 60 seconds" in notice
    [entry] = (await m.status())["chatRefused"]
    assert entry["code"] == CODE and entry["sessions"] == 1 and "permission" in entry["reason"]
    assert await m.gauge() == f'bridge_chat_refused{{meeting="{session.meeting_id}"}} 1.0'
    held = await m.bridge.store.deliveries(direction=Direction.INBOUND, state=DeliveryState.HELD, limit=10)
    assert sorted(str(d.body["text"]) for d in held) == ["one", "two"]
    assert await m.thread_texts() == ["<p>can anyone hear me?</p>"]

    await m.guest_chat(True)

    async def sent() -> bool:
        return [t for t in await m.thread_texts() if t in ("one", "two")] == ["one", "two"]

    await wait_for(sent, what="the held messages in the thread")

    async def back() -> list[str]:
        return [n for n in m.notices() if "accepts your messages again" in n]

    [again] = await wait_for(back, what="the chat-back notice")
    assert "2 kept messages are on the way" in again
    # What Teams said while the chat was refused reaches ann once it clears.
    await wait_for(lambda: _received(m, "can anyone hear me?"), what="the Teams message during the refusal")
    assert (await m.session()).condition is None
    assert (await m.status())["chatRefused"] == []
    assert await m.gauge() == f'bridge_chat_refused{{meeting="{session.meeting_id}"}} 0.0'
    assert len([n for n in m.notices() if "does not accept guest messages" in n]) == 1
    assert (await m.thread_texts()).count("one") == 1


async def _received(m: Meeting, text: str) -> bool:
    return any(r["text"] == text for r in m.receiver.of("message", "ann"))


@pytest.mark.parametrize("hold_s", [0.5])
async def test_held_messages_fail_with_the_reason_when_the_hold_runs_out(meeting: Meeting) -> None:
    m = meeting
    await m.guest_chat(False)
    assert (await m.send("message", "lost"))[0] == 202
    await refused(m)

    async def failed() -> list[Any]:
        return await m.bridge.store.deliveries(direction=Direction.INBOUND, state=DeliveryState.FAILED, limit=10)

    [delivery] = await wait_for(failed, what="the held message failed")
    assert delivery.body["text"] == "lost"
    assert delivery.last_error is not None and delivery.last_error.startswith("chat refused while in the call: ")

    async def undelivered() -> list[str]:
        return [n for n in m.notices() if "could not be delivered" in n]

    [notice] = await wait_for(undelivered, what="the undelivered notice")
    assert notice.startswith("1 message you sent could not be delivered")
    await m.guest_chat(True)
    await wait_for(lambda: _back(m), what="the chat-back notice")
    assert "lost" not in await m.thread_texts()


async def _back(m: Meeting) -> bool:
    return any("accepts your messages again." in n for n in m.notices())


async def test_a_403_the_connector_does_not_confirm_is_not_chat_refused(meeting: Meeting) -> None:
    """A 403 on a send, but the connector cannot say the leg is connected: no refusal is declared; the leg is looked
    at again, found in the call, and the held message goes out on the next try."""
    m = meeting
    rules = [
        {"action": "status", "path": "/chat/threads/*/messages", "method": "POST", "status": 403, "count": 1},
        {"action": "status", "path": "/sandbox/v1/calls/*", "method": "GET", "status": 404, "count": 1},
    ]
    await m.control.ok("PUT", "/sandbox/v1/faults", {"rules": rules})
    assert (await m.send("message", "through"))[0] == 202

    async def posted() -> bool:
        return "through" in await m.thread_texts()

    await wait_for(posted, what="the message in the thread")
    faults = await m.control.ok("GET", "/sandbox/v1/faults")
    assert [r["fired"] for r in faults["rules"]] == [1, 1]
    assert not [n for n in m.notices() if "does not accept guest messages" in n]
    assert (await m.session()).condition is None
