"""The sandbox's control API and raw HTTP against its ACS surfaces, as the tests drive them."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.sandbox import SandboxInfo


class Control:
    """A small client for the sandbox's control API and for raw HTTP against its ACS surfaces."""

    def __init__(self, session: aiohttp.ClientSession, info: SandboxInfo) -> None:
        self.session = session
        self.info = info
        self.base = info.endpoint.rstrip("/")

    async def call(self, method: str, path: str, json: Any = None, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=json, **kwargs) as resp:
            text = await resp.text()
            try:
                import json as _json

                body = _json.loads(text) if text else None
            except ValueError:
                body = text
            return resp.status, body

    async def ok(self, method: str, path: str, json: Any = None, **kwargs: Any) -> Any:
        status, body = await self.call(method, path, json, **kwargs)
        assert 200 <= status < 300, (method, path, status, body)
        return body

    async def meeting(self, subject: str = "Weekly sync", lobby: str = "auto", start: bool = True) -> dict[str, Any]:
        meeting = await self.ok(
            "POST", "/sandbox/v1/meetings", {"subject": subject, "organizer": {"displayName": "Megan"}, "lobby": lobby}
        )
        if start:
            meeting = await self.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/start")
        return dict(meeting)
