"""A bridge with the admin API on, driven over loopback with the operator token (admin API, CLI and console tests)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.config import AdminSection, MeetingConfig
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, client_for, new_secret, wait_for
from tests.support.sandbox import Control

TOKEN = "operator-token-0123456789"


CODE = "424242"


ANN = "webhook:app/ann"


class Admin:
    """A bridge with the admin API on, one configured meeting, and a webhook client `app` with a receiver."""

    def __init__(self, control: Control, bridge: Bridge, receiver: Receiver, meeting: dict[str, Any], secret: str):
        self.control, self.bridge, self.receiver = control, bridge, receiver
        self.meeting, self.secret = meeting, secret

    async def api(
        self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN, raw: bytes | None = None
    ) -> tuple[int, Any]:
        assert self.bridge.http is not None
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.bridge.http.request(
            method, f"{self.bridge.base}/api/v1{path}", data=data, headers=headers
        ) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.api(method, path, body)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    async def send(
        self, user: str, kind: str = "message", text: str | None = None, code: str = CODE
    ) -> tuple[int, Any]:
        event: dict[str, Any] = {"type": kind, "user": {"id": user, "displayName": user.title()}, "meeting": code}
        if text is not None:
            event["text"] = text
        return await self.bridge.send("app", self.secret, event)

    async def join(self, user: str, code: str = CODE) -> dict[str, Any]:
        status, _ = await self.send(user, "join", code=code)
        assert status == 202

        async def in_call() -> dict[str, Any] | None:
            found = (await self.ok("GET", f"/sessions?user=webhook:app/{user}&state=in_call"))["sessions"]
            return found[0] if found else None

        session: dict[str, Any] = await wait_for(in_call, what=f"{user} in the call")
        return session

    async def thread_texts(self, meeting: dict[str, Any]) -> list[str]:
        body = await self.control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}/messages")
        return [m["content"]["message"] for m in body["value"] if m["type"] in ("text", "html")]


async def start_admin(
    control: Control, info: SandboxInfo, tmp_path: Path, token: str | None = TOKEN, **relay: Any
) -> AsyncIterator[Admin]:
    meeting = await control.meeting()
    secret = new_secret()
    receiver = Receiver(client_for(None, secret))
    await receiver.start()
    receiver.client = client_for(receiver.url, secret)
    # A client without a callback URL: whatever is sent to its users fails for good, with a reason.
    clients = {"app": receiver.client, "nocb": client_for(None, secret)}
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Weekly sync")
    settings = bridge_settings(info, tmp_path / "bridge", clients=clients, meetings=[config], relay=relay)
    # Some tests send a wrong token to every route: the throttle that would soon answer 429 has its own tests.
    admin = AdminSection(token=SecretStr(token) if token else None, failed_tokens_allowed=10_000)
    settings = settings.model_copy(update={"admin": admin})
    bridge = await Bridge(settings).start()
    try:
        yield Admin(control, bridge, receiver, meeting, secret)
    finally:
        await bridge.stop()
        await receiver.stop()
