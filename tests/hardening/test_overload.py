"""Overload: a meeting flooded far past its ACS send limit (limits on in the sandbox) keeps bounded backlogs,
refuses what does not fit in stated ways (webhook 429 busy with Retry-After, one SMS notice), keeps other meetings
moving and loses nothing it accepted; a user whose outbound backlog is full gets backlog_full and one notice.

Everything runs the real bridge over loopback against the sandbox; nothing of the bridge is mocked.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.channels.sms.acs import PATH as ACS_EVENTS_PATH
from bot.channels.sms.intake import BUSY_TEXT
from bot.channels.webhook import sign
from bot.config import AdminSection, MeetingConfig, WebhookClient, load_settings
from bot.embedded import SMS_EVENT_TYPES, subscribe_sandbox_events
from bot.errors import ConfigError
from bot.models import DeliveryState, Direction, SessionState
from bot.relay.workers import BACKLOG_TEXT
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, listening_socket, new_secret, wait_for
from tests.support.metrics import scrape
from tests.support.sandbox import Control
from tests.support.sms import SmsWorld

FLOODED, CALM = "610001", "620002"


class FlakyReceiver(Receiver):
    """A webhook client's endpoint that can go down: 503 with Retry-After 1 while `down`, recording nothing."""

    down = False

    async def _receive(self, request: web.Request) -> web.Response:
        if self.down:
            await request.read()
            return web.Response(status=503, headers={"Retry-After": "1"})
        return await super()._receive(request)


@dataclass
class Posted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    webhook_id: str
    text: str = ""


@dataclass
class Flood:
    """Two meetings on one bridge, webhook users in them, and what the flood was answered."""

    control: Control
    bridge: Bridge
    receiver: FlakyReceiver
    secret: str
    meetings: dict[str, dict[str, Any]]
    accepted: list[Posted] = field(default_factory=list)
    refused: list[Posted] = field(default_factory=list)

    async def post(self, user: str, code: str, kind: str = "message", text: str = "", webhook_id: str = "") -> Posted:
        assert self.bridge.http is not None
        event: dict[str, Any] = {"type": kind, "user": {"id": user, "displayName": user.title()}, "meeting": code}
        if kind == "message":
            event["text"] = text
        payload = json.dumps(event)
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        url = f"{self.bridge.base}/channels/webhook/app"
        async with self.bridge.http.post(url, data=payload, headers=sign(self.secret, webhook_id, payload)) as resp:
            return Posted(resp.status, await resp.json(), dict(resp.headers), webhook_id, text)

    async def message(self, user: str, code: str, text: str) -> Posted:
        posted = await self.post(user, code, text=text)
        assert posted.status in (202, 429), (posted.status, posted.body)
        (self.accepted if posted.status == 202 else self.refused).append(posted)
        return posted

    async def joined(self, user: str, code: str) -> None:
        assert (await self.post(user, code, "join")).status == 202

        async def in_call() -> bool:
            mine = [s for s in await self.bridge.store.sessions() if s.user_id == f"webhook:app/{user}"]
            return bool(mine) and mine[-1].state == SessionState.IN_CALL

        await wait_for(in_call, what=f"{user} in the call")

    async def lines(self, code: str) -> list[str]:
        """Every line of every chat message in the meeting's thread: merged messages hold several."""
        body = await self.control.ok("GET", f"/sandbox/v1/meetings/{self.meetings[code]['id']}/messages")
        return [
            line
            for m in body["value"]
            if m["type"] in ("text", "html")
            for line in m["content"]["message"].split("<br>")
        ]

    async def waiting(self, code: str) -> int:
        """Inbound messages of the meeting not yet sent (queued or held)."""
        meeting = await self.bridge.relay.intake.find_meeting(code)
        assert meeting is not None
        rows = await self.bridge.store.deliveries(meeting_id=meeting.id, direction=Direction.INBOUND, limit=10_000)
        return len([r for r in rows if r.state in (DeliveryState.PENDING, DeliveryState.HELD)])


@asynccontextmanager
async def flood_world(
    control: Control, info: SandboxInfo, tmp_path: Path, codes: tuple[str, ...], **relay: Any
) -> AsyncIterator[Flood]:
    meetings = {code: await control.meeting(subject=f"Meeting {code}") for code in codes}
    secret = new_secret()

    def client(url: str | None) -> WebhookClient:
        # A generous request rate: the flood must meet the backlog limit, not the client's rate limit.
        return WebhookClient(secrets=[SecretStr(secret)], callback_url=url, rate_per_second=1000)

    receiver = FlakyReceiver(client(None))
    await receiver.start()
    receiver.client = client(receiver.url)
    configs = [MeetingConfig(link=m["joinWebUrl"], code=code, name=f"Meeting {code}") for code, m in meetings.items()]
    settings = bridge_settings(
        info, tmp_path / "bridge", clients={"app": receiver.client}, meetings=configs, relay=relay
    )
    settings = settings.model_copy(update={"admin": AdminSection(token=SecretStr(ADMIN_TOKEN))})
    bridge = await Bridge(settings).start()
    try:
        yield Flood(control, bridge, receiver, secret, meetings)
    finally:
        await bridge.stop()
        await receiver.stop()


ADMIN_TOKEN = secrets.token_urlsafe(24)


def refused_busy(posted: Posted, scope: str) -> bool:
    return posted.status == 429 and scope in posted.body["reason"]


async def test_a_flooded_meeting_refuses_with_busy_keeps_others_moving_and_loses_nothing_accepted(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with flood_world(
        control, info, tmp_path, (FLOODED, CALM), max_pending_per_meeting=20, max_pending_per_user=10
    ) as w:
        assert (await control.ok("GET", "/sandbox/v1/limits"))["enabled"] is True
        for user in ("ann", "bob", "cy"):
            await w.joined(user, FLOODED)
        await w.joined("dan", CALM)

        # One sender alone: their own backlog fills first (ACS lets 10 sends per 10 s through, the rest wait).
        for n in range(200):
            if refused_busy(await w.message("ann", FLOODED, f"ann solo {n:03d}"), "your backlog is full"):
                break
        else:
            pytest.fail("ann was never refused")
        # Then three senders in turn: the meeting's backlog fills (each send carries at most one sender's).
        for n in range(300):
            user = ("ann", "bob", "cy")[n % 3]
            if refused_busy(await w.message(user, FLOODED, f"{user} turn {n:03d}"), "meeting backlog is full"):
                break
        else:
            pytest.fail("the meeting was never refused")
        assert await w.waiting(FLOODED) <= 20  # the bound holds however fast requests come

        for posted in w.refused:
            assert posted.body["error"] == "busy", posted.body
            assert int(posted.headers["Retry-After"]) >= 1, posted.headers
            # Nothing stored, and the id not remembered: a retry with it is decided afresh.
            assert await w.bridge.store.inbox_answer("webhook:app", posted.webhook_id) is None

        # The calm meeting is not queued behind the flooded one: its messages arrive while the flood still waits.
        calm = [f"dan calm {n}" for n in range(3)]
        for text in calm:
            assert (await w.message("dan", CALM, text)).status == 202

        async def calm_delivered() -> bool:
            lines = await w.lines(CALM)
            return all(text in lines for text in calm)

        await wait_for(calm_delivered, what="the calm meeting's messages")
        assert await w.waiting(FLOODED) > 0, "the flooded meeting drained before the calm one was served"

        # Every accepted message reaches the flooded thread exactly once; no refused one does.
        accepted = [p.text for p in w.accepted if not p.text.startswith("dan")]

        async def drained() -> list[str]:
            lines = await w.lines(FLOODED)
            return lines if all(text in lines for text in accepted) else []

        lines = await wait_for(drained, limit_s=180, what="every accepted message in the flooded thread")
        for text in accepted:
            assert lines.count(text) == 1, text
        assert not [p.text for p in w.refused if p.text in lines]
        stored = await w.bridge.store.deliveries(direction=Direction.INBOUND, limit=10_000)
        assert {str(d.body["text"]) for d in stored} == {p.text for p in w.accepted}
        assert all(d.state == DeliveryState.DELIVERED for d in stored), [(d.state, d.last_error) for d in stored]

        # A refused message sent again with its webhook-id, once there is room, is taken.
        again = w.refused[0]
        user = again.text.split()[0]
        retried = await w.post(user, FLOODED, text=again.text, webhook_id=again.webhook_id)
        assert retried.status == 202, retried.body

        async def retried_in_thread() -> bool:
            return again.text in await w.lines(FLOODED)

        await wait_for(retried_in_thread, limit_s=60, what="the retried message in the thread")
        metrics = await scrape(w.bridge)
        assert metrics[("bridge_refused_total", (("channel", "webhook"), ("reason", "busy")))] == len(w.refused)


async def test_a_user_whose_outbound_backlog_is_full_gets_backlog_full_and_one_notice(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with flood_world(control, info, tmp_path, (FLOODED,), max_pending_per_user=5, max_attempts=100) as w:
        await w.joined("ann", FLOODED)

        async def told_in_call() -> bool:
            return any("in the meeting chat" in str(n["text"]) for n in w.receiver.of("notice", "ann"))

        await wait_for(told_in_call, what="ann told she is in the chat")
        w.receiver.down = True
        meeting = w.meetings[FLOODED]
        texts = [f"to ann {n:02d}" for n in range(12)]

        async def messages_for_ann(count: int) -> list[Any]:
            async def fanned_out() -> list[Any]:
                rows = await w.bridge.store.deliveries(user_id="webhook:app/ann", direction=Direction.OUTBOUND)
                found = [r for r in rows if r.kind == "message"]
                return found if len(found) >= count else []

            return list(await wait_for(fanned_out, what=f"{count} messages stored for ann"))

        for text in texts[:9]:
            await control.ok(
                "POST",
                f"/sandbox/v1/meetings/{meeting['id']}/messages",
                {"from": meeting["organizerId"], "html": f"<p>{text}</p>"},
            )
        await messages_for_ann(9)
        for text in texts[9:]:
            await control.ok(
                "POST",
                f"/sandbox/v1/meetings/{meeting['id']}/messages",
                {"from": meeting["organizerId"], "html": f"<p>{text}</p>"},
            )
        rows = await messages_for_ann(12)

        async def bounded() -> list[Any]:
            rows = await w.bridge.store.deliveries(user_id="webhook:app/ann", direction=Direction.OUTBOUND)
            messages = [r for r in rows if r.kind == "message"]
            return rows if len([r for r in messages if r.state == DeliveryState.FAILED]) == 7 else []

        rows = await wait_for(bounded, what="the deliveries past the limit to fail")
        messages = [r for r in rows if r.kind == "message"]
        assert [r.body["text"] for r in messages] == texts
        assert [r.state for r in messages] == [DeliveryState.PENDING] * 5 + [DeliveryState.FAILED] * 7
        assert {r.last_error for r in messages[5:]} == {"backlog_full"}
        notices = [r for r in rows if r.kind == "notice" and r.body.get("state") == "backlog_full"]
        assert len(notices) == 1 and notices[0].state == DeliveryState.PENDING
        assert notices[0].seq > messages[4].seq  # after the messages kept: the user reads it when they come back

        # Operators see why in the admin API.
        assert w.bridge.http is not None
        async with w.bridge.http.get(
            f"{w.bridge.base}/api/v1/deliveries",
            params={"user": "webhook:app/ann", "state": "failed"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as resp:
            assert resp.status == 200
            listed = (await resp.json())["deliveries"]
        assert sorted(d["lastError"] for d in listed) == ["backlog_full"] * 7

        # The receiver comes back: the kept messages arrive in order, then the one notice; the rest never do.
        w.receiver.down = False

        async def notice_arrived() -> bool:
            return any(n["text"] == BACKLOG_TEXT for n in w.receiver.of("notice", "ann"))

        await wait_for(notice_arrived, limit_s=60, what="the backlog notice")
        got = [r["text"] for r in w.receiver.received if r["type"] == "message"]
        assert got == texts[:5]
        after_join = [r for r in w.receiver.received if r["type"] == "message" or r["text"] == BACKLOG_TEXT]
        assert [r["type"] for r in after_join] == ["message"] * 5 + ["notice"]
        metrics = await scrape(w.bridge)
        assert metrics[("bridge_refused_total", (("channel", "webhook"), ("reason", "backlog_full")))] == 7


# SMS ---------------------------------------------------------------------------------------------------------

PHONE = "+15550177"
SMS_CODE = "630003"


@asynccontextmanager
async def sms_flood_world(control: Control, info: SandboxInfo, tmp_path: Path, **relay: Any) -> AsyncIterator[SmsWorld]:
    """A bridge on the ACS SMS gateway with Event Grid subscribed, as `run` wires it, with the relay's limits set."""
    meeting = await control.meeting(subject="Phones")
    config = MeetingConfig(link=meeting["joinWebUrl"], code=SMS_CODE, name="Phones")
    settings = bridge_settings(
        info,
        tmp_path / "bridge",
        clients={},
        meetings=[config],
        relay=relay,
        sms={"gateway": "acs", "burst_window_s": 0.3},
    )
    sock = listening_socket()
    bridge = Bridge(settings, sock)
    try:
        await bridge.start()
        assert settings.sms.events_secret is not None
        secret = settings.sms.events_secret.get_secret_value()
        await subscribe_sandbox_events(info, f"{bridge.base}{ACS_EVENTS_PATH}", secret, SMS_EVENT_TYPES)
        yield SmsWorld(control, bridge, "acs", meeting)
    finally:
        await bridge.stop()
        sock.close()


async def test_an_sms_user_over_the_limit_is_told_once_per_busy_spell(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with sms_flood_world(control, info, tmp_path, max_pending_per_user=4) as w:
        await w.text(f"JOIN {SMS_CODE}", PHONE)
        await w.until_text("in the meeting chat", PHONE)
        await w.until_state(SessionState.IN_CALL, PHONE)
        answered: list[tuple[str, bool]] = []  # (text, taken) in the order the phone sent them

        async def text(body: str) -> bool:
            answer = await w.until_handled(await w.text(body, PHONE))
            taken = answer.get("handled") != "busy"
            if taken:
                assert answer.get("status") == "queued", answer
            answered.append((body, taken))
            return taken

        async def text_until_busy(label: str) -> None:
            for n in range(200):
                if not await text(f"{label} {n:03d}"):
                    return
            pytest.fail("the phone was never refused")

        def spells() -> int:
            """Refusals that follow a taken text (or none): each starts a busy spell, told once."""
            return len([i for i, (_, taken) in enumerate(answered) if not taken and (i == 0 or answered[i - 1][1])])

        await text_until_busy("first")
        for n in range(3):
            await text(f"still busy {n}")  # the same spell, unless the backlog has drained in between

        async def drained() -> bool:
            return all(d.state == DeliveryState.DELIVERED for d in await w.inbound(PHONE))

        await wait_for(drained, limit_s=60, what="the phone's backlog to drain")
        await text_until_busy("second")  # a text gets in first, then a new spell
        accepted = [t for t, taken in answered if taken]
        busy = [t for t, taken in answered if not taken]
        assert spells() >= 2 and len(busy) > spells(), answered

        async def sent() -> list[str]:
            lines = [line for _, html in await w.thread() for line in html.split("<br>")]
            return lines if all(t in lines for t in accepted) else []

        lines = await wait_for(sent, limit_s=60, what="every accepted text in the thread")
        for t in accepted:
            assert lines.count(t) == 1, t
        assert not [t for t in busy if t in lines]
        assert {str(d.body["text"]) for d in await w.inbound(PHONE)} == set(accepted)
        for t in busy:  # not queued, but marked seen: a redelivery of the event is dropped
            assert not [d for d in await w.inbound(PHONE) if d.body["text"] == t]
        await w.until_text(BUSY_TEXT, PHONE, count=spells())
        assert len([t for t in await w.inbox(PHONE) if t == BUSY_TEXT]) == spells()
        metrics = await scrape(w.bridge)
        assert metrics[("bridge_refused_total", (("channel", "sms"), ("reason", "busy")))] == len(busy)


# settings ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["max_pending_per_meeting", "max_pending_per_user"])
def test_the_limits_must_be_positive(key: str) -> None:
    with pytest.raises(ConfigError, match=f"relay.{key}"):
        load_settings(None, environ={f"BRIDGE__RELAY__{key.upper()}": "0"})
    assert getattr(load_settings(None, environ={f"BRIDGE__RELAY__{key.upper()}": "7"}).relay, key) == 7
