"""End to end with calls.connector = "client_reported": the webhook client's own app holds each user's call leg in
the sandbox meeting, as an app running the Calling SDK does, and drives the bridge's session with signed call
reports; the bridge over loopback with the real Azure SDKs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.config import MeetingConfig, Settings
from bot.models import Session, SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, client_for, new_secret, wait_for
from tests.support.call_app import CallApp
from tests.support.sandbox import Control

S = SessionState
CODE, SHARED = "515151", "525252"


def client_reported(settings: Settings) -> Settings:
    return settings.model_copy(update={"calls": settings.calls.model_copy(update={"connector": "client_reported"})})


@dataclass
class Reported:
    control: Control
    bridge: Bridge
    receiver: Receiver
    app: CallApp
    meeting: dict[str, Any]
    settings: Settings

    async def send(self, user: str, kind: str, text: str | None = None, code: str = CODE) -> tuple[int, Any]:
        event: dict[str, Any] = {"type": kind, "user": {"id": user, "displayName": user.title()}, "meeting": code}
        if text is not None:
            event["text"] = text
        return await self.bridge.send("app", self.app.secret, event)

    async def session(self, user: str) -> Session | None:
        mine = [s for s in await self.bridge.store.sessions() if s.user_id == f"webhook:app/{user}"]
        return mine[-1] if mine else None

    async def until_state(self, user: str, state: SessionState) -> Session:
        async def reached() -> Session | None:
            session = await self.session(user)
            return session if session is not None and session.state == state else None

        found: Session = await wait_for(reached, what=f"{user} {state.value}")
        return found

    def notices(self, user: str) -> list[str]:
        return [str(n["text"]) for n in self.receiver.of("notice", user)]

    async def until_notice(self, user: str, fragment: str) -> None:
        async def seen() -> bool:
            return any(fragment in n for n in self.notices(user))

        await wait_for(seen, what=f"notice {fragment!r} for {user}")

    async def texts(self) -> list[tuple[str, str]]:
        body = await self.control.ok("GET", f"/sandbox/v1/meetings/{self.meeting['id']}/messages")
        return [
            (m.get("senderDisplayName", ""), m["content"]["message"])
            for m in body["value"]
            if m["type"] in ("text", "html")
        ]

    async def until_text(self, text: str) -> list[tuple[str, str]]:
        async def there() -> list[tuple[str, str]]:
            return [t for t in await self.texts() if t[1] == text]

        found: list[tuple[str, str]] = await wait_for(there, what=f"{text!r} in the thread")
        return found

    async def post(self, html: str) -> None:
        body = {"from": self.meeting["organizerId"], "html": html}
        await self.control.ok("POST", f"/sandbox/v1/meetings/{self.meeting['id']}/messages", body)

    async def until_received(self, user: str, text: str) -> None:
        async def got() -> bool:
            return text in [m["text"] for m in self.receiver.of("message", user)]

        await wait_for(got, what=f"{user} to receive {text!r}")

    async def admit(self, call_id: str) -> None:
        await self.control.ok("POST", f"/sandbox/v1/meetings/{self.meeting['id']}/lobby/{call_id}/admit")

    async def in_call(self, user: str) -> str:
        """Join, the app's call admitted from the lobby and reported: the user is in the meeting chat."""
        status, body = await self.send(user, "join")
        assert status == 202, body
        await self.until_state(user, S.LOBBY)
        call_id = await self.app.join_call(user, self.meeting)
        assert await self.app.reported(user, "lobby") == {
            "id": body["id"],
            "status": "unchanged",
            "state": "lobby",
        }
        await self.admit(call_id)
        await self.app.until_call(user, "connected")
        assert await self.app.reported(user, "connected") == {
            "id": body["id"],
            "status": "reported",
            "state": "connected",
        }
        await self.until_state(user, S.IN_CALL)
        await self.until_notice(user, "in the meeting chat")
        return call_id


@pytest.fixture
async def reported(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Reported]:
    meeting = await control.meeting(lobby="manual")
    shared = await control.meeting(subject="Shared", lobby="manual")
    secret = new_secret()
    receiver = Receiver(client_for(None, secret))
    await receiver.start()
    receiver.client = client_for(receiver.url, secret)
    meetings = [
        MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Weekly sync"),
        MeetingConfig(link=shared["joinWebUrl"], code=SHARED, name="Town hall", identity_mode="shared"),
    ]
    base = bridge_settings(info, tmp_path / "bridge", clients={"app": receiver.client}, meetings=meetings)
    settings = client_reported(base)
    bridge = await Bridge(settings).start()
    world = Reported(control, bridge, receiver, CallApp(control, bridge, secret, CODE), meeting, settings)
    try:
        yield world
    finally:
        await world.bridge.stop()
        await receiver.stop()


async def test_the_apps_reports_take_a_user_from_the_lobby_into_the_call_and_out_when_removed(
    reported: Reported,
) -> None:
    call_id = await reported.in_call("ann")
    status, body = await reported.send("ann", "message", "hello from the app")
    assert status == 202 and body["status"] == "queued", body
    assert await reported.until_text("hello from the app") == [("Ann (app)", "hello from the app")]
    await reported.post("<p>Welcome, Ann</p>")
    await reported.until_received("ann", "Welcome, Ann")

    await reported.control.ok("DELETE", f"/sandbox/v1/meetings/{reported.meeting['id']}/participants/{call_id}")
    await reported.app.until_call("ann", "removed")
    assert (await reported.app.reported("ann", "removed"))["status"] == "reported"
    session = await reported.until_state("ann", S.LEFT)
    assert session.reason == "removed"
    await reported.until_notice("ann", "The organizer removed you")
    # The call's end, reported after its removal, finds no session: a finished session stays finished.
    status, body = await reported.app.report("ann", "ended")
    assert status == 409 and body["error"] == "not_in_call" and body["state"] == "none", body
    assert body["reason"].startswith("there is no session in this meeting to report on")
    assert (await reported.session("ann")) == session


async def test_a_left_report_ends_the_session_without_joining_again(reported: Reported) -> None:
    await reported.in_call("bob")
    await reported.app.hang_up("bob")
    assert await reported.app.reported("bob", "left") == {
        "id": f"session-{(await reported.session('bob')).id}",  # type: ignore[union-attr]
        "status": "reported",
        "state": "left",
    }
    session = await reported.until_state("bob", S.LEFT)
    await reported.until_notice("bob", "You left Weekly sync")
    status, body = await reported.send("bob", "message", "after leaving")
    assert status == 409 and body["state"] == "none", body
    assert (await reported.session("bob")) == session  # not joined again behind the user's back
    assert [e[0] for e in await reported.bridge.store.session_events(session.id)][-1] == "left"


async def test_a_call_the_app_joined_anew_replaces_the_old_one_whose_late_reports_change_nothing(
    reported: Reported,
) -> None:
    first = await reported.in_call("cy")
    await reported.app.hang_up("cy")  # the app's network dropped; it joins again
    second = await reported.app.join_call("cy", reported.meeting)
    assert (await reported.app.reported("cy", "lobby"))["status"] == "reported"
    await reported.until_state("cy", S.LOBBY)
    await reported.admit(second)
    await reported.app.until_call("cy", "connected")
    await reported.app.reported("cy", "connected")
    await reported.until_state("cy", S.IN_CALL)
    await reported.until_notice("cy", "back in the meeting chat")
    # The first call's own end, delivered late, is not the user's.
    assert (await reported.app.reported("cy", "left", call_id=first))["status"] == "ignored"
    status, body = await reported.send("cy", "message", "still here")
    assert status == 202, body
    await reported.until_text("still here")
    assert (await reported.session("cy")).state == S.IN_CALL  # type: ignore[union-attr]


async def test_after_a_restart_sessions_stay_in_the_call_until_the_app_reports_otherwise(
    reported: Reported,
) -> None:
    await reported.in_call("dee")
    told = len(reported.notices("dee"))
    await reported.bridge.stop()
    reported.bridge = await Bridge(reported.settings).start()
    reported.app.bridge = reported.bridge
    status, body = await reported.send("dee", "message", "after the restart")
    assert status == 202 and body["state"] == "in_call", body
    await reported.until_text("after the restart")
    assert len(reported.notices("dee")) == told  # nobody is bothered by a restart
    assert (await reported.app.reported("dee", "connected"))["status"] == "reported"  # where the call stands
    await reported.app.hang_up("dee")
    await reported.app.reported("dee", "left")
    await reported.until_state("dee", S.LEFT)


async def test_reports_nobody_can_act_on_are_refused_with_a_reason(reported: Reported) -> None:
    status, body = await reported.app.report("eve", "connected")
    assert status == 409 and body["error"] == "not_in_call" and body["state"] == "none", body
    status, body = await reported.bridge.send(
        "app", reported.app.secret, reported.app.event("eve", "lobby") | {"meeting": "000000"}
    )
    assert status == 404 and body["error"] == "unknown_meeting", body
    # A shared leg speaks for everyone in the meeting: one user's app cannot say where it stands.
    status, body = await reported.send("eve", "join", code=SHARED)
    assert status == 202, body
    await reported.until_state("eve", S.LOBBY)
    shared = reported.app.event("eve", "connected") | {"meeting": SHARED}
    status, body = await reported.bridge.send("app", reported.app.secret, shared)
    assert status == 409 and body["error"] == "not_reported" and "shared" in body["reason"], body
    assert (await reported.session("eve")).state == S.LOBBY  # type: ignore[union-attr]
