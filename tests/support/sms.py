"""A bridge on one SMS gateway wired to the sandbox as `run` wires it, and the simulated phones' hands."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.channels.sms.acs import PATH as ACS_EVENTS_PATH
from bot.channels.sms.acs import SMS_RECEIVED
from bot.channels.sms.twilio import INBOUND_PATH as TWILIO_PATH
from bot.channels.sms.twilio import STATUS_PATH as TWILIO_STATUS_PATH
from bot.config import MeetingConfig
from bot.embedded import SMS_EVENT_TYPES, point_sandbox_twilio, subscribe_sandbox_events, twilio_on_sandbox
from bot.models import Delivery, Direction, SessionState
from bot.sandbox import SandboxInfo
from bot.store import StoreUrl
from tests.support.bridge import Bridge, base_url, bridge_settings, listening_socket, wait_for
from tests.support.sandbox import Control

PHONE = "+15550100"


OTHER = "+15550111"


CODE = "515151"


MEETING_NAME = "Weekly sync"


IN_CHAT = "in the meeting chat"


class SmsWorld:
    """A bridge on one gateway, one sandbox meeting, and the phones' hands: texting, inboxes, the thread."""

    def __init__(self, control: Control, bridge: Bridge, gateway: str, meeting: dict[str, Any]) -> None:
        self.control = control
        self.bridge = bridge
        self.gateway = gateway
        self.meeting = meeting
        assert bridge.settings.sms.number is not None
        self.number = bridge.settings.sms.number

    # phones ---------------------------------------------------------------------------------------------

    async def text(self, message: str, phone: str = PHONE) -> str:
        """The phone texts the bridge's number; returns the provider's message id."""
        body = await self.control.ok(
            "POST", f"/sandbox/v1/phones/{quote(phone, safe='')}/sms", {"to": self.number, "message": message}
        )
        return str(body["messageId"])

    async def inbox(self, phone: str = PHONE) -> list[str]:
        body = await self.control.ok("GET", f"/sandbox/v1/phones/{quote(phone, safe='')}/sms")
        return [str(sms["message"]) for sms in body["value"] if sms["from"] == self.number]

    async def until_text(self, part: str, phone: str = PHONE, count: int = 1) -> list[str]:
        """Texts the phone received that contain `part`, once there are at least `count` of them."""

        async def arrived() -> list[str]:
            found = [t for t in await self.inbox(phone) if part in t]
            return found if len(found) >= count else []

        return list(await wait_for(arrived, what=f"{count} text(s) with {part!r} on {phone}"))

    async def until_inbox(self, count: int, phone: str = PHONE) -> list[str]:
        async def arrived() -> list[str]:
            texts = await self.inbox(phone)
            return texts if len(texts) >= count else []

        return list(await wait_for(arrived, what=f"{count} text(s) on {phone}"))

    # the meeting ----------------------------------------------------------------------------------------

    @property
    def meeting_path(self) -> str:
        return f"/sandbox/v1/meetings/{self.meeting['id']}"

    async def post(self, html: str) -> None:
        """The organizer (Megan) writes in the meeting chat."""
        await self.control.ok(
            "POST", f"{self.meeting_path}/messages", {"from": self.meeting["organizerId"], "html": html}
        )

    async def thread(self) -> list[tuple[str, str]]:
        body = await self.control.ok("GET", f"{self.meeting_path}/messages")
        return [
            (m.get("senderDisplayName", ""), m["content"]["message"])
            for m in body["value"]
            if m["type"] in ("text", "html")
        ]

    async def until_thread(self, text: str) -> list[tuple[str, str]]:
        async def posted() -> list[tuple[str, str]]:
            return [m for m in await self.thread() if m[1] == text]

        return list(await wait_for(posted, what=f"{text!r} in the thread"))

    async def admit_all(self) -> None:
        async def waiting() -> list[dict[str, Any]]:
            return list((await self.control.ok("GET", self.meeting_path))["roster"]["lobby"])

        for leg in await wait_for(waiting, what="a leg in the lobby"):
            await self.control.ok("POST", f"{self.meeting_path}/lobby/{leg['id']}/admit")

    # the bridge -----------------------------------------------------------------------------------------

    async def state(self, phone: str = PHONE) -> SessionState | None:
        mine = [s for s in await self.bridge.store.sessions() if s.user_id == f"sms:{phone}"]
        return mine[-1].state if mine else None

    async def until_state(self, state: SessionState, phone: str = PHONE) -> None:
        async def reached() -> bool:
            return await self.state(phone) == state

        await wait_for(reached, what=f"{phone} {state}")

    async def joined(self, phone: str = PHONE) -> None:
        """JOIN by code; returns once the phone was told it is in the meeting chat."""
        before = len([t for t in await self.inbox(phone) if IN_CHAT in t])
        await self.text(f"JOIN {CODE}", phone)
        await self.until_text(IN_CHAT, phone, count=before + 1)
        await self.until_state(SessionState.IN_CALL, phone)

    async def until_handled(self, message_id: str) -> dict[str, Any]:
        """The bridge's record of one inbound text, once it has handled it (whatever it decided)."""

        async def handled() -> tuple[int, dict[str, Any]] | None:
            return await self.bridge.store.inbox_answer(f"sms:{self.gateway}", message_id)

        _, answer = await wait_for(handled, what=f"text {message_id} to be handled")
        return dict(answer)

    async def outbound(self, phone: str = PHONE) -> list[Delivery]:
        return await self.bridge.store.deliveries(user_id=f"sms:{phone}", direction=Direction.OUTBOUND)

    async def inbound(self, phone: str = PHONE) -> list[Delivery]:
        return await self.bridge.store.deliveries(user_id=f"sms:{phone}", direction=Direction.INBOUND)

    async def post_raw(self, path: str, **kwargs: Any) -> tuple[int, str]:
        assert self.bridge.http is not None
        async with self.bridge.http.post(f"{self.bridge.base}{path}", **kwargs) as resp:
            return resp.status, await resp.text()


@asynccontextmanager
async def sms_world(
    control: Control,
    info: SandboxInfo,
    tmp_path: Path,
    gateway: str,
    *,
    lobby: str = "auto",
    sms: dict[str, Any] | None = None,
    extra_meetings: list[MeetingConfig] | None = None,
    store_url: StoreUrl | None = None,
    **meeting_opts: Any,
) -> AsyncIterator[SmsWorld]:
    """A bridge wired to the sandbox for one gateway as `run` wires it: Event Grid subscribed to the ACS SMS door,
    or the Twilio number's webhook pointed at the Twilio door with status callbacks back to the bridge."""
    meeting = await control.meeting(subject=MEETING_NAME, lobby=lobby)
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name=MEETING_NAME, **meeting_opts)
    overrides = {"gateway": gateway, "burst_window_s": 0.3, **(sms or {})}
    meetings = [config, *(extra_meetings or [])]
    settings = bridge_settings(
        info, tmp_path / "bridge", clients={}, meetings=meetings, sms=overrides, store_url=store_url
    )
    sock = listening_socket()
    try:
        if gateway == "twilio":
            settings = await twilio_on_sandbox(settings, info)
            # The port is known before start, so the callback URL the gateway sends is the bridge's own.
            twilio = settings.twilio.model_copy(update={"status_url": f"{base_url(sock)}{TWILIO_STATUS_PATH}"})
            settings = settings.model_copy(update={"twilio": twilio})
        bridge = Bridge(settings, sock)
        try:
            await bridge.start()
            if gateway == "acs":
                assert settings.sms.events_secret is not None
                secret = settings.sms.events_secret.get_secret_value()
                await subscribe_sandbox_events(info, f"{bridge.base}{ACS_EVENTS_PATH}", secret, SMS_EVENT_TYPES)
                subscriptions = (await control.ok("GET", "/sandbox/v1/event-subscriptions"))["value"]
                assert len(subscriptions) == 1, subscriptions
            else:
                await point_sandbox_twilio(info, f"{bridge.base}{TWILIO_PATH}")
            yield SmsWorld(control, bridge, gateway, meeting)
        finally:
            await bridge.stop()
    finally:
        sock.close()


def sms_received_event(info: SandboxInfo, message_id: str, text: str, phone: str = PHONE) -> dict[str, Any]:
    """An Event Grid SMSReceived event as ACS delivers it."""
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/sandbox/resourceGroups/sandbox/providers/Microsoft.Communication/sandbox",
        "subject": f"/phonenumber/{phone.lstrip('+')}",
        "eventType": SMS_RECEIVED,
        "eventTime": datetime.now(UTC).isoformat(),
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": {
            "messageId": message_id,
            "from": phone,
            "to": info.sms_number,
            "message": text,
            "receivedTimestamp": datetime.now(UTC).isoformat(),
        },
    }
