"""One bridge with connector = "browser" on the sandbox, shared by a test module: its meetings, users and views."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.calls.browser import BrowserConnector
from bot.config import MeetingConfig
from bot.models import Session, SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, client_for, new_secret, wait_for
from tests.support.sandbox import Control

Json = dict[str, Any]


@dataclass
class Stage:
    control: Control
    bridge: Bridge
    receiver: Receiver
    secret: str
    meetings: dict[str, Json] = field(default_factory=dict)
    """Sandbox meetings by the code users join them with."""

    @property
    def connector(self) -> BrowserConnector:
        connector = self.bridge.relay.presence.connector
        assert isinstance(connector, BrowserConnector)
        return connector

    async def send(self, user: str, code: str, kind: str = "message", text: str | None = None) -> tuple[int, Any]:
        event: Json = {"type": kind, "user": {"id": user, "displayName": user.title()}, "meeting": code}
        if text is not None:
            event["text"] = text
        return await self.bridge.send("app", self.secret, event)

    async def join(self, user: str, code: str) -> None:
        status, body = await self.send(user, code, "join")
        assert status == 202, body

    async def say(self, user: str, code: str, text: str) -> None:
        status, body = await self.send(user, code, text=text)
        assert status == 202, body

    async def session(self, user: str, code: str) -> Session | None:
        stored = {m.code: m.id for m in await self.bridge.store.list_meetings()}
        mine = [s for s in await self.bridge.store.sessions(stored[code]) if s.user_id == f"webhook:app/{user}"]
        return mine[-1] if mine else None

    async def until_state(self, user: str, code: str, state: SessionState, limit_s: float = 30.0) -> Session:
        async def reached() -> Session | None:
            session = await self.session(user, code)
            return session if session is not None and session.state == state else None

        found: Session = await wait_for(reached, limit_s, what=f"{user} {state.value} in {code}")
        return found

    def notices(self, user: str) -> list[str]:
        return [str(n["text"]) for n in self.receiver.of("notice", user)]

    async def until_notice(self, user: str, fragment: str, limit_s: float = 30.0) -> str:
        async def seen() -> list[str]:
            return [n for n in self.notices(user) if fragment in n]

        found = await wait_for(seen, limit_s, what=f"notice {fragment!r} for {user}")
        return str(found[0])

    def messages(self, user: str) -> list[str]:
        return [str(m["text"]) for m in self.receiver.of("message", user)]

    async def until_message(self, user: str, text: str, limit_s: float = 30.0) -> None:
        async def got() -> bool:
            return text in self.messages(user)

        await wait_for(got, limit_s, what=f"{user} to receive {text!r}")

    # the Teams side ----------------------------------------------------------------------------------------

    def path(self, code: str) -> str:
        return f"/sandbox/v1/meetings/{self.meetings[code]['id']}"

    async def roster(self, code: str) -> Json:
        return dict((await self.control.ok("GET", self.path(code)))["roster"])

    async def acs_in_call(self, code: str) -> list[Json]:
        return [p for p in (await self.roster(code))["inCall"] if p.get("kind") == "acs"]

    async def post(self, code: str, html: str) -> None:
        sender = self.meetings[code]["organizerId"]
        await self.control.ok("POST", f"{self.path(code)}/messages", {"from": sender, "html": html})

    async def texts(self, code: str) -> list[tuple[str, str]]:
        """(sender's display name, HTML) of every chat message in the meeting's thread, oldest first."""
        body = await self.control.ok("GET", f"{self.path(code)}/messages")
        return [
            (m.get("senderDisplayName", ""), m["content"]["message"])
            for m in body["value"]
            if m["type"] in ("text", "html")
        ]

    async def until_texts(self, code: str, expected: list[str], limit_s: float = 60.0) -> list[str]:
        async def there() -> list[str]:
            lines = [line for _, html in await self.texts(code) for line in html.split("<br>")]
            return lines if all(t in lines for t in expected) else []

        found: list[str] = await wait_for(there, limit_s, what=f"{expected} in the thread of {code}")
        return found

    async def end_leg(self, code: str, leg_id: str, code_: int, sub_code: int) -> None:
        """The service ends one ACS leg with this callEndReason (the sandbox's control switch)."""
        body = {"code": code_, "subCode": sub_code}
        await self.control.ok("POST", f"{self.path(code)}/participants/{leg_id}/end", body)

    async def end_meeting(self, code: str) -> None:
        await self.control.ok("POST", f"{self.path(code)}/end")


def needs_chromium() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")


@asynccontextmanager
async def browser_stage(
    http: aiohttp.ClientSession,
    info: SandboxInfo,
    state_dir: Path,
    lobbies: dict[str, str],
    **browser: Any,
) -> AsyncIterator[Stage]:
    """A bridge whose connector is the browser, on a freshly reset sandbox, with one meeting per code in `lobbies`
    (code → "auto" or "manual"). Its Control does not reset the sandbox: the module's tests share the bridge."""
    needs_chromium()
    control = Control(http, info)
    await control.ok("POST", "/sandbox/v1/reset")
    meetings = {code: await control.meeting(subject=f"Meeting {code}", lobby=lobby) for code, lobby in lobbies.items()}
    secret = new_secret()
    receiver = Receiver(client_for(None, secret))
    await receiver.start()
    # A crowd joins at once: more requests in a second than one app's default rate allows.
    receiver.client = client_for(receiver.url, secret).model_copy(update={"rate_per_second": 1000.0})
    configs = [MeetingConfig(link=m["joinWebUrl"], code=code, name=f"Meeting {code}") for code, m in meetings.items()]
    settings = bridge_settings(info, state_dir, clients={"app": receiver.client}, meetings=configs)
    calls = settings.calls.model_copy(
        update={"connector": "browser", "browser": settings.calls.browser.model_copy(update=browser)}
    )
    bridge = await Bridge(settings.model_copy(update={"calls": calls})).start()
    stage = Stage(control, bridge, receiver, secret, meetings)
    try:
        yield stage
    finally:
        await stage.bridge.stop()
        await receiver.stop()
