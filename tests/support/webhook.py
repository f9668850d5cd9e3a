"""A bridge with one sandbox meeting and one signed webhook client, and the hands to drive and read it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.config import MeetingConfig
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from bot.store import StoreUrl
from tests.support.bridge import Bridge, Receiver, bridge_settings, client_for, new_secret, wait_for
from tests.support.sandbox import Control

CODE = "424242"


class World:
    def __init__(self, control: Control, bridge: Bridge, receiver: Receiver, meeting: dict[str, Any], secret: str):
        self.control = control
        self.bridge = bridge
        self.receiver = receiver
        self.meeting = meeting
        self.secret = secret

    async def send(self, user: str, kind: str = "message", text: str | None = None, **extra: Any) -> tuple[int, Any]:
        event: dict[str, Any] = {"type": kind, "user": {"id": user, "displayName": user.title()}, "meeting": CODE}
        if text is not None:
            event["text"] = text
        return await self.bridge.send("app", self.secret, event, **extra)

    async def thread(self) -> list[dict[str, Any]]:
        body = await self.control.ok("GET", f"/sandbox/v1/meetings/{self.meeting['id']}/messages")
        return list(body["value"])

    async def texts(self) -> list[tuple[str, str]]:
        return [
            (m.get("senderDisplayName", ""), m["content"]["message"])
            for m in await self.thread()
            if m["type"] in ("text", "html")
        ]

    async def session_state(self, user: str) -> SessionState | None:
        sessions = await self.bridge.store.sessions()
        mine = [s for s in sessions if s.user_id == f"webhook:app/{user}"]
        return mine[-1].state if mine else None

    async def until_state(self, user: str, state: SessionState) -> None:
        async def check() -> bool:
            return await self.session_state(user) == state

        await wait_for(check, what=f"{user} {state}")


async def make_world(
    control: Control,
    info: SandboxInfo,
    tmp_path: Path,
    lobby: str = "auto",
    store_url: StoreUrl | None = None,
    **meeting_opts: Any,
) -> AsyncIterator[World]:
    meeting = await control.meeting(lobby=lobby)
    secret = new_secret()
    receiver = Receiver(client_for(None, secret))
    await receiver.start()
    client = client_for(receiver.url, secret)
    receiver.client = client
    settings = bridge_settings(
        info,
        tmp_path / "bridge",
        clients={"app": client},
        meetings=[MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Weekly sync", **meeting_opts)],
        store_url=store_url,
    )
    bridge = await Bridge(settings).start()
    try:
        yield World(control, bridge, receiver, meeting, secret)
    finally:
        await bridge.stop()
        await receiver.stop()
