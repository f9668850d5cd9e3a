"""Forgery and replay at every inbound door of the real bridge, table by table.

Doors: the signed webhook channel, the ACS SMS Event Grid door (and its handshakes), the ACS chat events door (and
its handshakes), Twilio's inbound and status posts, the admin API and the console. Each forged request is one that
would be relayed (or would change something) if its door let it through: the sender is in the call, the text is
chat. Refused, it must get the documented status, leave every row of the store as it was, and relay nothing: a
real message sent afterwards by the same sender arrives, and the forged one never does. Replayed ids are answered
as the first time and act once.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from multidict import CIMultiDictProxy
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook
from yarl import URL

from bot.admin.console_auth import CONSOLE_SESSIONS, COOKIE, LIFETIME_S
from bot.channels.chat_events import CHAT_EVENTS
from bot.channels.chat_events import PATH as EVENTS_PATH
from bot.channels.eventgrid import VALIDATION_EVENT
from bot.channels.sms.acs import PATH as SMS_EVENTS_PATH
from bot.channels.sms.twilio import INBOUND_PATH as TWILIO_PATH
from bot.channels.sms.twilio import STATUS_PATH as TWILIO_STATUS_PATH
from bot.channels.sms.twilio import twilio_signature
from bot.channels.webhook import sign
from bot.commands import DEFAULT_TEXTS
from bot.config import AdminSection, MeetingConfig, WebhookClient
from bot.embedded import SMS_EVENT_TYPES, subscribe_sandbox_events
from bot.models import Direction, SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, client_for, new_secret, wait_for
from tests.support.call_app import CallApp
from tests.support.sandbox import Control
from tests.support.sms import CODE, OTHER, PHONE, SmsWorld, sms_received_event, sms_world
from tests.support.store import settled, stored

TOKEN = "operator-token-7c41d09b2e"
RETIRED_TOKEN = "operator-token-retired-5a18"
"""The operator token before the last rotation: no longer in the configuration."""
EVENTS_SECRET = "chat-events-secret-current-1"
RETIRED_EVENTS_SECRET = "chat-events-secret-retired-0"
SMS_SECRET = "sms-events-secret-current-1"
RETIRED_SMS_SECRET = "sms-events-secret-retired-0"
RETIRED_TWILIO_TOKEN = "0" * 32
ANN = "webhook:app/ann"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ORIGIN = {"WebHook-Request-Origin": "eventgrid.azure.net"}


def marker() -> str:
    return f"forged-{uuid.uuid4().hex[:8]}"


# the world: one bridge with every door but Twilio's ------------------------------------------------------


@dataclass
class Doors:
    """A bridge with a webhook client `app` in mid-rotation (secrets current and previous, one retired), another
    client `other`, the admin API and console, the chat events door and the ACS SMS door subscribed on the sandbox."""

    control: Control
    bridge: Bridge
    receiver: Receiver
    meeting: dict[str, Any]
    current: str
    previous: str
    retired: str
    other: str
    app: CallApp | None = None
    """With calls.connector = "client_reported": the client's app, which holds its users' calls and reports them."""

    @property
    def sms(self) -> SmsWorld:
        return SmsWorld(self.control, self.bridge, "acs", self.meeting)

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, CIMultiDictProxy[str]]:
        assert self.bridge.http is not None
        kwargs.setdefault("allow_redirects", False)
        async with self.bridge.http.request(method, f"{self.bridge.base}{path}", **kwargs) as resp:
            text = await resp.text()
            try:
                body: Any = json.loads(text) if text else None
            except ValueError:
                body = text
            return resp.status, body, resp.headers

    async def say(self, text: str, user: str = "ann", secret: str | None = None, **extra: Any) -> tuple[int, Any]:
        event = {"type": "message", "user": {"id": user, "displayName": user.title()}, "meeting": CODE, "text": text}
        return await self.bridge.send("app", secret or self.current, event, **extra)

    async def join(self, user: str = "ann") -> None:
        event = {"type": "join", "user": {"id": user, "displayName": user.title()}, "meeting": CODE}
        status, body = await self.bridge.send("app", self.current, event)
        assert status == 202, body
        if self.app is not None:
            await self.until_state(SessionState.LOBBY, f"webhook:app/{user}")
            await self.app.join_call(user, self.meeting)  # the meeting admits at once
            await self.app.until_call(user, "connected")
            await self.app.reported(user, "connected")

        async def told() -> bool:
            return any("in the meeting chat" in n["text"] for n in self.receiver.of("notice", user))

        await wait_for(told, what=f"{user} told they are in the meeting chat")

    async def thread(self) -> list[str]:
        return [text for _, text in await self.sms.thread()]

    async def nothing_relayed(self, forged: str) -> str:
        """Ann's next real message arrives, and the forged text never did: the outbox keeps each sender's order.
        Returns the real message's text."""
        sentinel = f"real-{uuid.uuid4().hex[:8]}"
        status, body = await self.say(sentinel)
        assert status == 202, body
        await self.sms.until_thread(sentinel)
        assert not [t for t in await self.thread() if forged in t]
        return sentinel

    async def reader_asleep(self) -> None:
        """The meeting's reader has made its first read and sleeps until its next poll or a chat event."""
        readers = self.bridge.relay.readers

        async def polled() -> bool:
            return readers.polls >= 1

        await wait_for(polled, what="the reader's first read")
        await settled(self.bridge)  # the read itself is over, not only begun

    async def state(self, user: str = ANN) -> SessionState | None:
        sessions = [s for s in await self.bridge.store.sessions() if s.user_id == user]
        return sessions[-1].state if sessions else None

    async def until_state(self, wanted: SessionState, user: str = ANN) -> None:
        async def reached() -> bool:
            return await self.state(user) == wanted

        await wait_for(reached, what=f"{user} {wanted}")


@asynccontextmanager
async def open_doors(
    control: Control, info: SandboxInfo, tmp_path: Path, connector: str = "auto", **relay: Any
) -> AsyncIterator[Doors]:
    meeting = await control.meeting()
    current, previous, retired, other = (new_secret() for _ in range(4))
    client = WebhookClient(secrets=[SecretStr(current), SecretStr(previous)])
    receiver = Receiver(client)
    await receiver.start()
    receiver.client = client.model_copy(update={"callback_url": receiver.url})
    settings = bridge_settings(
        info,
        tmp_path / "bridge",
        clients={"app": receiver.client, "other": client_for(None, other)},
        meetings=[MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Weekly sync")],
        relay=relay,
        sms={"gateway": "acs", "events_secret": SecretStr(SMS_SECRET), "burst_window_s": 0.0},
    )
    settings = settings.model_copy(
        update={
            # Every route gets each wrong token here: the throttle that would soon answer 429 has its own tests.
            "admin": AdminSection(token=SecretStr(TOKEN), failed_tokens_allowed=10_000),
            "events": settings.events.model_copy(update={"secret": SecretStr(EVENTS_SECRET)}),
            "calls": settings.calls.model_copy(update={"connector": connector}),
        }
    )
    bridge = await Bridge(settings).start()
    app = CallApp(control, bridge, current, CODE) if connector == "client_reported" else None
    try:
        await subscribe_sandbox_events(info, f"{bridge.base}{SMS_EVENTS_PATH}", SMS_SECRET, SMS_EVENT_TYPES)
        yield Doors(control, bridge, receiver, meeting, current, previous, retired, other, app)
    finally:
        await bridge.stop()
        await receiver.stop()


@pytest.fixture
async def doors(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Doors]:
    async with open_doors(control, info, tmp_path) as world:
        yield world


@pytest.fixture
async def reporting_doors(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Doors]:
    """The same doors on a bridge whose users' own app holds their calls and reports them (client_reported)."""
    async with open_doors(control, info, tmp_path, connector="client_reported") as world:
        yield world


# the webhook channel ------------------------------------------------------------------------------------

Forge = Callable[[Doors, bytes], tuple[dict[str, str], bytes]]


def _signed(secret: str, body: bytes, *, at: datetime | None = None, msg_id: str | None = None) -> dict[str, str]:
    return sign(secret, msg_id or f"msg_{uuid.uuid4().hex}", body.decode(), at)


def _without(header: str) -> Forge:
    return lambda d, body: ({k: v for k, v in _signed(d.current, body).items() if k != header}, body)


def _by(secret: Callable[[Doors], str]) -> Forge:
    return lambda d, body: (_signed(secret(d), body), body)


def _at(offset: timedelta) -> Forge:
    return lambda d, body: (_signed(d.current, body, at=datetime.now(UTC) + offset), body)


def _edited(change: Callable[[dict[str, str]], dict[str, str]]) -> Forge:
    """Signed right, then one header changed."""
    return lambda d, body: (change(_signed(d.current, body)), body)


def _tampered(d: Doors, body: bytes) -> tuple[dict[str, str], bytes]:
    """A signature the client made for a harmless body, sent with another body."""
    harmless = json.loads(body) | {"text": "harmless"}
    return _signed(d.current, json.dumps(harmless).encode()), body


def _flip(signature: str) -> str:
    version, _, digest = signature.partition(",")
    raw = bytearray(base64.b64decode(digest))
    raw[0] ^= 1
    return f"{version},{base64.b64encode(bytes(raw)).decode()}"


WEBHOOK_FORGERIES = [
    pytest.param(lambda d, body: ({"Content-Type": "application/json"}, body), id="unsigned"),
    pytest.param(_without("webhook-signature"), id="no-signature"),
    pytest.param(_without("webhook-id"), id="no-id"),
    pytest.param(_without("webhook-timestamp"), id="no-timestamp"),
    pytest.param(_by(lambda d: new_secret()), id="wrong-secret"),
    pytest.param(_by(lambda d: d.retired), id="rotated-out-secret"),
    pytest.param(_by(lambda d: d.other), id="another-clients-secret"),
    pytest.param(_tampered, id="tampered-body"),
    pytest.param(_edited(lambda h: h | {"webhook-id": f"msg_{uuid.uuid4().hex}"}), id="other-id"),
    pytest.param(_edited(lambda h: h | {"webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}), id="moved-time"),
    pytest.param(_at(-timedelta(minutes=6)), id="expired"),
    pytest.param(_at(timedelta(minutes=6)), id="from-the-future"),
    pytest.param(_at(-timedelta(days=365)), id="a-year-old"),
    pytest.param(_edited(lambda h: h | {"webhook-signature": _flip(h["webhook-signature"])}), id="one-bit-off"),
    pytest.param(_edited(lambda h: h | {"webhook-signature": "v2" + h["webhook-signature"][2:]}), id="v2-scheme"),
    pytest.param(_edited(lambda h: h | {"webhook-signature": "v1,"}), id="empty-digest"),
    pytest.param(_edited(lambda h: h | {"webhook-signature": "v1,***"}), id="not-base64"),
    pytest.param(_edited(lambda h: h | {"webhook-signature": h["webhook-signature"][3:]}), id="no-version"),
    pytest.param(_edited(lambda h: h | {"webhook-signature": h["webhook-signature"] + "\xff"}), id="not-utf8"),
]


@pytest.mark.parametrize("forge", WEBHOOK_FORGERIES)
async def test_forged_webhook_is_refused_stores_and_relays_nothing(doors: Doors, forge: Forge) -> None:
    await doors.join()
    forged = marker()
    body = json.dumps({"type": "message", "user": {"id": "ann"}, "meeting": CODE, "text": forged}).encode()
    before = await settled(doors.bridge)
    headers, sent = forge(doors, body)
    status, answer, _ = await doors.request("POST", "/channels/webhook/app", data=sent, headers=headers)
    assert status == 401 and answer["error"] == "bad_signature" and answer["reason"], answer
    assert stored(doors.bridge.settings.store_file) == before
    await doors.nothing_relayed(forged)


@pytest.mark.parametrize("forge", WEBHOOK_FORGERIES)
async def test_forged_call_report_is_refused_and_leaves_the_session_in_the_call(
    reporting_doors: Doors, forge: Forge
) -> None:
    """A call report that got in would take Ann out of the meeting; forged, it changes nothing."""
    doors = reporting_doors
    assert doors.app is not None
    await doors.join()
    body = json.dumps(doors.app.event("ann", "removed")).encode()
    before = await settled(doors.bridge)
    headers, sent = forge(doors, body)
    status, answer, _ = await doors.request("POST", "/channels/webhook/app", data=sent, headers=headers)
    assert status == 401 and answer["error"] == "bad_signature" and answer["reason"], answer
    assert stored(doors.bridge.settings.store_file) == before
    await doors.nothing_relayed("removed")
    assert await doors.state() == SessionState.IN_CALL


async def test_rightly_signed_call_report_is_taken(reporting_doors: Doors) -> None:
    """The other side: the same report, signed by the client, takes Ann out."""
    doors = reporting_doors
    assert doors.app is not None
    await doors.join()
    status, answer, _ = await doors.request(
        "POST",
        "/channels/webhook/app",
        data=(body := json.dumps(doors.app.event("ann", "removed")).encode()),
        headers=_signed(doors.previous, body),
    )
    assert status == 202 and answer["status"] == "reported", answer
    await doors.until_state(SessionState.LEFT)


ACCEPTED = [
    pytest.param(lambda d: d.current, timedelta(0), id="current-secret"),
    pytest.param(lambda d: d.previous, timedelta(0), id="previous-secret-during-rotation"),
    pytest.param(lambda d: d.current, -timedelta(minutes=4), id="4-min-old"),
    pytest.param(lambda d: d.current, timedelta(minutes=4), id="4-min-ahead"),
]


@pytest.mark.parametrize(("secret", "offset"), ACCEPTED)
async def test_rightly_signed_webhook_is_relayed_once(
    doors: Doors, secret: Callable[[Doors], str], offset: timedelta
) -> None:
    """The other side of the table: what the forgeries lack is all it takes."""
    await doors.join()
    text = f"signed-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"type": "message", "user": {"id": "ann"}, "meeting": CODE, "text": text}).encode()
    headers = _signed(secret(doors), body, at=datetime.now(UTC) + offset)
    status, answer, _ = await doors.request("POST", "/channels/webhook/app", data=body, headers=headers)
    assert status == 202 and answer["status"] == "queued", answer
    assert await doors.sms.until_thread(text) == [("Ann (app)", text)]


async def test_a_secret_rotated_out_of_the_configuration_stops_working(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    """A rotation as operators run it, restart by restart: [old], then [new, old], then [new]."""
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Weekly sync")
    old, new = new_secret(), new_secret()
    join = {"type": "join", "user": {"id": "ann", "displayName": "Ann"}, "meeting": CODE}
    leave = join | {"type": "leave"}
    for secrets, accepted, refused in (([old], [old], [new]), ([new, old], [new, old], []), ([new], [new], [old])):
        client = WebhookClient(secrets=[SecretStr(s) for s in secrets])
        settings = bridge_settings(info, tmp_path / "bridge", clients={"app": client}, meetings=[config])
        bridge = await Bridge(settings).start()
        try:
            for secret in refused:
                before = await settled(bridge)
                status, answer = await bridge.send("app", secret, join)
                assert status == 401 and answer["error"] == "bad_signature", (secrets, answer)
                assert stored(settings.store_file) == before
            for secret in accepted:
                for event in (join, leave):
                    status, answer = await bridge.send("app", secret, event)
                    assert status == 202, (secrets, event["type"], answer)
        finally:
            await bridge.stop()


# replayed webhook ids: the first answer again, nothing done twice

REPLAYS = [
    pytest.param(lambda d: d.current, "first", id="same-request"),
    pytest.param(lambda d: d.current, "second", id="same-id-new-body"),
    pytest.param(lambda d: d.previous, "first", id="same-id-other-rotation-secret"),
    pytest.param(lambda d: d.previous, "second", id="same-id-new-body-other-secret"),
]


@pytest.mark.parametrize(("secret", "which"), REPLAYS)
async def test_replayed_webhook_id_is_answered_as_before_and_acts_once(
    doors: Doors, secret: Callable[[Doors], str], which: str
) -> None:
    await doors.join()
    texts = {"first": f"once-{uuid.uuid4().hex[:8]}", "second": f"twice-{uuid.uuid4().hex[:8]}"}
    msg_id = f"msg_{uuid.uuid4().hex}"
    first = await doors.say(texts["first"], webhook_id=msg_id)
    assert first[0] == 202 and first[1]["status"] == "queued", first
    await doors.sms.until_thread(texts["first"])
    before = await settled(doors.bridge)
    again = await doors.say(texts[which], secret=secret(doors), webhook_id=msg_id)
    assert again == first
    assert stored(doors.bridge.settings.store_file) == before
    sentinel = await doors.nothing_relayed(texts["second"])
    assert [t for t in await doors.thread() if t == texts["first"]] == [texts["first"]]
    inbound = await doors.bridge.store.deliveries(user_id=ANN, direction=Direction.INBOUND)
    assert [r.body["text"] for r in inbound] == [texts["first"], sentinel]


@pytest.mark.parametrize(("secret", "which"), REPLAYS)
async def test_replayed_call_report_is_answered_as_before_and_acts_once(
    reporting_doors: Doors, secret: Callable[[Doors], str], which: str
) -> None:
    """The first report says Ann's call is connected; its id again, even with a report of her removal, is that
    first report: answered as it was, and she stays in the call."""
    doors = reporting_doors
    assert doors.app is not None
    await doors.join()
    msg_id = f"msg_{uuid.uuid4().hex}"
    first = await doors.app.report("ann", "connected", webhook_id=msg_id)
    assert first[0] == 202 and first[1]["status"] == "unchanged", first
    before = await settled(doors.bridge)
    event = doors.app.event("ann", {"first": "connected", "second": "removed"}[which])
    again = await doors.bridge.send("app", secret(doors), event, msg_id)
    assert again == first
    assert stored(doors.bridge.settings.store_file) == before
    await doors.nothing_relayed("never sent")
    assert await doors.state() == SessionState.IN_CALL


async def test_replayed_join_after_leaving_changes_nothing(doors: Doors) -> None:
    join = {"type": "join", "user": {"id": "ann", "displayName": "Ann"}, "meeting": CODE}
    first = await doors.bridge.send("app", doors.current, join, webhook_id="msg_join")
    assert first[0] == 202 and first[1]["id"].startswith("session-")
    await doors.until_state(SessionState.IN_CALL)
    status, _ = await doors.bridge.send("app", doors.current, join | {"type": "leave"})
    assert status == 202
    await doors.until_state(SessionState.LEFT)
    before = await settled(doors.bridge)
    assert await doors.bridge.send("app", doors.current, join, webhook_id="msg_join") == first
    assert stored(doors.bridge.settings.store_file) == before
    assert await doors.state() == SessionState.LEFT


# the Event Grid doors: ACS SMS and ACS chat events ------------------------------------------------------


@dataclass(frozen=True)
class Codes:
    current: str
    retired: str
    other_door: str


SMS_CODES = Codes(SMS_SECRET, RETIRED_SMS_SECRET, EVENTS_SECRET)
CHAT_CODES = Codes(EVENTS_SECRET, RETIRED_EVENTS_SECRET, SMS_SECRET)
CODE_FORGERIES = [
    pytest.param(lambda c: "", id="no-code"),
    pytest.param(lambda c: "?code=", id="empty-code"),
    pytest.param(lambda c: "?code=wrong", id="wrong-code"),
    pytest.param(lambda c: f"?code={c.retired}", id="rotated-out-code"),
    pytest.param(lambda c: f"?code={c.other_door}", id="the-other-doors-code"),
    pytest.param(lambda c: f"?code={c.current.upper()}", id="other-case"),
    pytest.param(lambda c: f"?code={c.current[:-1]}", id="shorter"),
    pytest.param(lambda c: f"?Code={c.current}", id="misnamed-parameter"),
    pytest.param(lambda c: f"?code={c.current}%ff", id="not-utf8"),
]


def validation_event(code: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/sandbox",
        "subject": "",
        "eventType": VALIDATION_EVENT,
        "eventTime": datetime.now(UTC).isoformat(),
        "data": {"validationCode": code, "validationUrl": "https://eventgrid.example/validate"},
        "dataVersion": "1",
    }


async def refuses_handshakes(doors: Doors, url: str) -> None:
    """Neither handshake is answered: a subscription cannot be pointed at the door without its code."""
    status, answer, _ = await doors.request("POST", url, json=[validation_event("forged-validation")])
    assert status == 401 and answer["error"] == "unauthorized" and "validationResponse" not in answer, answer
    status, _, headers = await doors.request("OPTIONS", url, headers=ORIGIN)
    assert status == 401 and "WebHook-Allowed-Origin" not in headers


async def test_redelivered_join_after_leave_does_not_rejoin(doors: Doors, info: SandboxInfo) -> None:
    """Event Grid retries for up to a day: a JOIN delivered again after the phone left must not bring it back."""
    sms = doors.sms
    join_id = await sms.text(f"JOIN {CODE}")
    await sms.until_state(SessionState.IN_CALL)
    await sms.text("LEAVE")
    await sms.until_text("You left")
    await sms.until_state(SessionState.LEFT)
    phone_had = await sms.inbox()
    before = await settled(doors.bridge)
    again = sms_received_event(info, join_id, f"JOIN {CODE}")
    status, answer, _ = await doors.request("POST", f"{SMS_EVENTS_PATH}?code={SMS_SECRET}", json=[again])
    assert status == 200, answer
    assert stored(doors.bridge.settings.store_file) == before
    await sms.text("STATUS")  # answered after anything the redelivery could have caused
    await sms.until_text(DEFAULT_TEXTS["status_none"])
    assert (await sms.inbox())[len(phone_had) :] == [DEFAULT_TEXTS["status_none"]]
    assert await sms.state() == SessionState.LEFT


@pytest.fixture
async def quiet_doors(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Doors]:
    """Polling so slow that within a test only a chat event can make the reader look at the thread."""
    async with open_doors(control, info, tmp_path, poll_active_s=60.0, poll_idle_s=60.0) as world:
        yield world


def chat_event(thread_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/sandbox",
        "subject": f"thread/{thread_id}/sender/x/recipient/y",
        "eventType": CHAT_EVENTS[0],
        "eventTime": datetime.now(UTC).isoformat(),
        "data": {"threadId": thread_id, "messageId": "1", "messageBody": "forged"},
        "dataVersion": "1.0",
    }


async def teams_says(doors: Doors, text: str) -> None:
    await doors.control.ok(
        "POST",
        f"/sandbox/v1/meetings/{doors.meeting['id']}/messages",
        {"from": doors.meeting["organizerId"], "html": f"<p>{text}</p>"},
    )


@pytest.mark.parametrize("query", CODE_FORGERIES)
async def test_forged_event_grid_posts_are_refused_stored_and_relayed_nowhere(
    quiet_doors: Doors, info: SandboxInfo, query: Callable[[Codes], str]
) -> None:
    doors, sms = quiet_doors, quiet_doors.sms
    await sms.joined()
    readers = doors.bridge.relay.readers
    await doors.reader_asleep()
    forged = marker()
    # A Teams message waits in the thread: a chat event would have the reader carry it to the phone at once.
    await teams_says(doors, forged)
    phone_had = await sms.inbox()
    before = await settled(doors.bridge)
    polls = readers.polls

    sms_url = SMS_EVENTS_PATH + query(SMS_CODES)
    # A chat text from the phone in the call, and a JOIN from a new phone (which a real one would answer).
    events = [
        sms_received_event(info, f"Incoming_{forged}", forged),
        sms_received_event(info, f"Incoming_{forged}_join", f"JOIN {CODE}", OTHER),
    ]
    status, answer, _ = await doors.request("POST", sms_url, json=events)
    assert status == 401 and answer["error"] == "unauthorized", answer
    await refuses_handshakes(doors, sms_url)
    chat_url = EVENTS_PATH + query(CHAT_CODES)
    status, answer, _ = await doors.request("POST", chat_url, json=[chat_event(doors.meeting["threadId"])])
    assert status == 401 and answer["error"] == "unauthorized", answer
    await refuses_handshakes(doors, chat_url)

    await asyncio.sleep(0.2)  # a poke wakes the reader within milliseconds
    assert readers.polls == polls
    assert stored(doors.bridge.settings.store_file) == before
    sentinel = f"real-{uuid.uuid4().hex[:8]}"
    await sms.text(sentinel)
    await sms.until_thread(sentinel)
    assert [t for t in await doors.thread() if forged in t] == [f"<p>{forged}</p>"]  # only Teams' own
    assert await sms.inbox() == phone_had and await sms.inbox(OTHER) == []


@pytest.mark.parametrize(("path", "codes"), [(SMS_EVENTS_PATH, SMS_CODES), (EVENTS_PATH, CHAT_CODES)])
async def test_both_handshakes_are_answered_with_the_code(doors: Doors, path: str, codes: Codes) -> None:
    """The positive side: the same handshakes with the door's code are answered."""
    url = f"{path}?code={codes.current}"
    status, answer, _ = await doors.request("POST", url, json=[validation_event("real-validation")])
    assert (status, answer) == (200, {"validationResponse": "real-validation"})
    status, _, headers = await doors.request("OPTIONS", url, headers=ORIGIN)
    assert status == 200 and headers["WebHook-Allowed-Origin"] == ORIGIN["WebHook-Request-Origin"]


async def test_a_chat_event_with_the_code_wakes_the_reader(quiet_doors: Doors) -> None:
    """The positive side: the forged chat event, with the door's code, carries a waiting Teams message at once."""
    doors = quiet_doors
    await doors.join()
    await doors.reader_asleep()
    text = f"pushed-{uuid.uuid4().hex[:8]}"
    await teams_says(doors, text)
    url = f"{EVENTS_PATH}?code={CHAT_CODES.current}"
    status, _, _ = await doors.request("POST", url, json=[chat_event(doors.meeting["threadId"])])
    assert status == 200

    async def delivered() -> bool:
        return any(m["text"] == text for m in doors.receiver.of("message", "ann"))

    await wait_for(delivered, limit_s=10, what="the Teams message after a real event")


def _renamed(event: dict[str, Any]) -> dict[str, Any]:
    """Event Grid's redelivery of the same text under a new event id."""
    return event | {"id": str(uuid.uuid4())}


def _rewritten(event: dict[str, Any]) -> dict[str, Any]:
    """The same provider message id with other words, under a new event id."""
    return _renamed(event) | {"data": event["data"] | {"message": "replaced words"}}


SMS_REPLAYS = [
    pytest.param(lambda e: [e], id="same-event"),
    pytest.param(lambda e: [_rewritten(e)], id="same-message-id-other-words-new-event-id"),
    pytest.param(lambda e: [e, _renamed(e), _rewritten(e)], id="all-in-one-batch"),
]


@pytest.mark.parametrize("replay", SMS_REPLAYS)
async def test_replayed_sms_event_acts_once(
    doors: Doors, info: SandboxInfo, replay: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    sms = doors.sms
    await sms.joined()
    text = f"once-{uuid.uuid4().hex[:8]}"
    event = sms_received_event(info, f"Incoming_{text}", text)
    url = f"{SMS_EVENTS_PATH}?code={SMS_SECRET}"
    status, answer, _ = await doors.request("POST", url, json=[event])
    assert status == 200, answer
    await sms.until_thread(text)
    before = await settled(doors.bridge)
    status, answer, _ = await doors.request("POST", url, json=replay(event))
    assert status == 200, answer  # Event Grid must hear success, or it redelivers
    assert stored(doors.bridge.settings.store_file) == before
    sentinel = f"real-{uuid.uuid4().hex[:8]}"
    await sms.text(sentinel)
    await sms.until_thread(sentinel)
    assert [t for t in await doors.thread() if t in (text, "replaced words")] == [text]


# Twilio: inbound texts and status callbacks -------------------------------------------------------------


@dataclass(frozen=True)
class TwilioDoor:
    token: str
    url: str
    """The URL the forged post goes to (and Twilio would sign)."""
    elsewhere: str
    """The bridge's other Twilio URL: a signature for one is no signature for the other."""


TwilioForge = Callable[[TwilioDoor, dict[str, str]], tuple[dict[str, str], str]]


def _twilio(token: Callable[[TwilioDoor], str], url: Callable[[TwilioDoor], str] = lambda t: t.url) -> TwilioForge:
    return lambda t, form: (FORM | {"X-Twilio-Signature": twilio_signature(token(t), url(t), form)}, urlencode(form))


def _signed_then(change: Callable[[dict[str, str]], dict[str, str]]) -> TwilioForge:
    """Signed right for the form, then the form changed on the way."""
    return lambda t, form: (_twilio(lambda t: t.token)(t, form)[0], urlencode(change(form)))


def _twilio_flipped(t: TwilioDoor, form: dict[str, str]) -> tuple[dict[str, str], str]:
    raw = bytearray(base64.b64decode(twilio_signature(t.token, t.url, form)))
    raw[-1] ^= 1
    return FORM | {"X-Twilio-Signature": base64.b64encode(bytes(raw)).decode()}, urlencode(form)


def _twilio_sha256(t: TwilioDoor, form: dict[str, str]) -> tuple[dict[str, str], str]:
    data = t.url + "".join(k + v for k, v in sorted(form.items()))
    digest = hmac.new(t.token.encode(), data.encode(), hashlib.sha256).digest()
    return FORM | {"X-Twilio-Signature": base64.b64encode(digest).decode()}, urlencode(form)


TWILIO_FORGERIES = [
    pytest.param(lambda t, form: (FORM, urlencode(form)), id="unsigned"),
    pytest.param(lambda t, form: (FORM | {"X-Twilio-Signature": ""}, urlencode(form)), id="empty-signature"),
    pytest.param(_twilio(lambda t: "not-the-auth-token"), id="wrong-token"),
    pytest.param(_twilio(lambda t: RETIRED_TWILIO_TOKEN), id="rotated-out-token"),
    pytest.param(_twilio(lambda t: t.token, lambda t: t.elsewhere), id="signed-for-the-other-url"),
    pytest.param(_twilio(lambda t: t.token, lambda t: f"https://evil.example{TWILIO_PATH}"), id="another-host"),
    pytest.param(_signed_then(lambda f: f | {"Body": f"{f.get('Body', '')}!"}), id="tampered-body"),
    pytest.param(_signed_then(lambda f: f | {"NumMedia": "0"}), id="added-parameter"),
    pytest.param(_signed_then(lambda f: {k: v for k, v in f.items() if k != "AccountSid"}), id="dropped-parameter"),
    pytest.param(_twilio_flipped, id="one-bit-off"),
    pytest.param(_twilio_sha256, id="hmac-sha256"),
    pytest.param(lambda t, form: (FORM | {"X-Twilio-Signature": "\xff"}, urlencode(form)), id="not-utf8"),
]


@pytest.fixture
async def twilio(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[SmsWorld]:
    async with sms_world(control, info, tmp_path, "twilio", sms={"burst_window_s": 0.0}) as world:
        await world.joined()
        yield world


def twilio_door(world: SmsWorld, status: bool = False) -> TwilioDoor:
    token = world.bridge.settings.twilio.auth_token
    assert token is not None
    inbound, callbacks = f"{world.bridge.base}{TWILIO_PATH}", f"{world.bridge.base}{TWILIO_STATUS_PATH}"
    assert world.bridge.settings.twilio.status_url == callbacks
    return TwilioDoor(token.get_secret_value(), *((callbacks, inbound) if status else (inbound, callbacks)))


def twilio_text(world: SmsWorld, text: str, phone: str = PHONE, sid: str | None = None) -> dict[str, str]:
    account = world.bridge.settings.twilio.account_sid or "AC0"
    sid = sid or f"SM{uuid.uuid4().hex}"
    return {"MessageSid": sid, "AccountSid": account, "From": phone, "To": world.number, "Body": text}


async def post_form(world: SmsWorld, path: str, headers: dict[str, str], body: str) -> tuple[int, str]:
    assert world.bridge.http is not None
    async with world.bridge.http.post(f"{world.bridge.base}{path}", data=body, headers=headers) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize("forge", TWILIO_FORGERIES)
async def test_forged_twilio_posts_are_refused_stored_and_relayed_nowhere(twilio: SmsWorld, forge: TwilioForge) -> None:
    forged = marker()
    phone_had = await twilio.inbox()
    before = await settled(twilio.bridge)
    # A chat text from the phone in the call, and a JOIN from a new phone (which a real one would answer).
    for form in (twilio_text(twilio, forged), twilio_text(twilio, f"JOIN {CODE}", OTHER)):
        status, answer = await post_form(twilio, TWILIO_PATH, *forge(twilio_door(twilio), form))
        assert status == 403 and json.loads(answer)["error"] == "bad_signature", answer
    # A status callback saying the text the phone did get never arrived.
    [sent] = [d for d in await twilio.outbound() if d.remote_id and "in the meeting chat" in str(d.body["text"])]
    assert sent.report == "delivered"
    report = {"MessageSid": sent.remote_id or "", "AccountSid": "AC0", "MessageStatus": "undelivered"}
    report |= {"ErrorCode": "30008"}
    status, answer = await post_form(twilio, TWILIO_STATUS_PATH, *forge(twilio_door(twilio, status=True), report))
    assert status == 403 and json.loads(answer)["error"] == "bad_signature", answer

    assert stored(twilio.bridge.settings.store_file) == before
    sentinel = f"real-{uuid.uuid4().hex[:8]}"
    await twilio.text(sentinel)
    await twilio.until_thread(sentinel)
    assert not [m for m in await twilio.thread() if forged in m[1]]
    assert await twilio.inbox() == phone_had and await twilio.inbox(OTHER) == []


TWILIO_REPLAYS = [
    pytest.param(lambda form: form, id="same-post"),
    pytest.param(lambda form: form | {"Body": "replaced words"}, id="same-sid-other-words"),
    pytest.param(lambda form: form | {"From": OTHER, "Body": f"JOIN {CODE}"}, id="same-sid-other-sender"),
]


@pytest.mark.parametrize("replay", TWILIO_REPLAYS)
async def test_replayed_twilio_sid_acts_once(
    twilio: SmsWorld, replay: Callable[[dict[str, str]], dict[str, str]]
) -> None:
    text = f"once-{uuid.uuid4().hex[:8]}"
    form = twilio_text(twilio, text)
    door = twilio_door(twilio)
    assert (await post_form(twilio, TWILIO_PATH, *_twilio(lambda t: t.token)(door, form)))[0] == 200
    await twilio.until_thread(text)
    phone_had = await twilio.inbox()
    before = await settled(twilio.bridge)
    for _ in range(2):
        status, answer = await post_form(twilio, TWILIO_PATH, *_twilio(lambda t: t.token)(door, replay(form)))
        assert status == 200, answer  # Twilio must hear success, or it retries
    assert stored(twilio.bridge.settings.store_file) == before
    sentinel = f"real-{uuid.uuid4().hex[:8]}"
    await twilio.text(sentinel)
    await twilio.until_thread(sentinel)
    assert [m[1] for m in await twilio.thread() if m[1] in (text, "replaced words")] == [text]
    assert await twilio.inbox() == phone_had and await twilio.inbox(OTHER) == []


# the admin API ------------------------------------------------------------------------------------------


def _basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"operator:{secret}".encode()).decode()


ADMIN_FORGERIES = [
    pytest.param({}, "", id="no-credentials"),
    pytest.param({"Authorization": "Bearer not-the-operator-token"}, "", id="wrong-token"),
    pytest.param({"Authorization": f"Bearer {RETIRED_TOKEN}"}, "", id="rotated-out-token"),
    pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, "", id="shorter"),
    pytest.param({"Authorization": f"Bearer {TOKEN}0"}, "", id="longer"),
    pytest.param({"Authorization": f"Bearer {TOKEN.upper()}"}, "", id="other-case"),
    pytest.param({"Authorization": "Bearer "}, "", id="empty-bearer"),
    pytest.param({"Authorization": _basic(TOKEN)}, "", id="basic-scheme"),
    pytest.param({"Authorization": TOKEN}, "", id="no-scheme"),
    pytest.param({"X-Api-Key": TOKEN}, "", id="another-header"),
    pytest.param({}, f"token={TOKEN}", id="in-the-query"),
    pytest.param({}, f"access_token={TOKEN}", id="in-the-query-oauth-style"),
    pytest.param({"Cookie": f"{COOKIE}={TOKEN}"}, "", id="token-as-console-cookie"),
    pytest.param({"Authorization": f"Bearer {TOKEN}\xff"}, "", id="not-utf8"),
]


ADMIN_READS = ["/status", f"/deliveries?user={quote(ANN, safe='')}", f"/users/{quote(ANN, safe='')}"]


async def admin_changes(doors: Doors) -> list[tuple[str, str, dict[str, Any] | None]]:
    """One of each kind of change the API makes, aimed at Ann and her meeting."""
    [session] = [s for s in await doors.bridge.store.sessions() if s.user_id == ANN]
    another = await doors.control.meeting(subject="Another")
    user = quote(ANN, safe="")
    return [
        ("PATCH", f"/meetings/{CODE}", {"paused": True}),
        ("POST", f"/users/{user}/block", None),
        ("DELETE", f"/sessions/{session.id}", None),
        ("POST", f"/users/{user}/forget", None),
        ("DELETE", f"/meetings/{CODE}", None),
        ("POST", "/meetings", {"link": another["joinWebUrl"], "code": "9090"}),
    ]


@pytest.mark.parametrize(("headers", "query"), ADMIN_FORGERIES)
async def test_admin_api_without_the_token_reads_and_changes_nothing(
    doors: Doors, headers: dict[str, str], query: str
) -> None:
    await doors.join()
    changes = await admin_changes(doors)
    before = await settled(doors.bridge)
    for method, path, body in [("GET", path, None) for path in ADMIN_READS] + changes:
        url = f"/api/v1{path}" + (("&" if "?" in path else "?") + query if query else "")
        status, answer, sent = await doors.request(method, url, json=body, headers=headers)
        assert status == 401 and answer["error"] == "unauthorized", (method, path, answer)
        assert sent["WWW-Authenticate"].startswith("Bearer")
    assert stored(doors.bridge.settings.store_file) == before
    await doors.nothing_relayed(marker())  # still in the call, not blocked, the meeting neither paused nor gone


DISGUISED_PATHS = [
    pytest.param("//api/v1/meetings", id="double-slash"),
    pytest.param("/API/v1/meetings", id="upper-case"),
    pytest.param("/api/v1//meetings", id="inner-double-slash"),
    pytest.param("/api%2Fv1/meetings", id="encoded-slash"),
    pytest.param("/api/v1/%6deetings", id="encoded-letter"),
    pytest.param("/api/v1/x/../meetings", id="dot-dot"),
    pytest.param("/api/v1/openapi.json/../meetings", id="via-the-public-document"),
    pytest.param("/api/v1/openapi.json%2F..%2Fmeetings", id="via-the-public-document-encoded"),
    pytest.param("/console/../api/v1/meetings", id="via-the-console"),
]


@pytest.mark.parametrize("path", DISGUISED_PATHS)
async def test_a_disguised_admin_path_is_no_way_around_the_token(doors: Doors, path: str) -> None:
    """Whatever spelling of an API path reaches a handler passes the token check first."""
    assert doors.bridge.http is not None
    before = await settled(doors.bridge)
    for method, body in (("GET", None), ("POST", {"link": doors.meeting["joinWebUrl"], "code": "9090"})):
        url = URL(f"{doors.bridge.base}{path}", encoded=True)  # sent as written, not normalised by the client
        async with doors.bridge.http.request(method, url, json=body) as resp:
            assert resp.status in (401, 404), (method, path, resp.status, await resp.text())
    assert stored(doors.bridge.settings.store_file) == before


async def test_admin_api_with_the_token_does_change(doors: Doors) -> None:
    """The positive side: the same request with the operator's token pauses the meeting."""
    await doors.join()
    before = await settled(doors.bridge)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, answer, _ = await doors.request("PATCH", f"/api/v1/meetings/{CODE}", json={"paused": True}, headers=headers)
    assert status == 200 and answer["paused"] is True, answer
    assert stored(doors.bridge.settings.store_file) != before


# the console --------------------------------------------------------------------------------------------


@dataclass
class Signed:
    cookie: str
    csrf: str


async def sign_in(doors: Doors) -> Signed:
    status, _, headers = await doors.request("POST", "/console/login", data={"token": TOKEN})
    assert status == 303, status
    cookie = headers.getall("Set-Cookie")[0].split(";")[0].partition("=")[2]
    status, page, _ = await doors.request("GET", "/console", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert status == 200
    csrf = page.split('<meta name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return Signed(cookie, csrf)


LOGIN_FORGERIES = [
    pytest.param({"token": "not-the-operator-token"}, {}, 401, id="wrong-token"),
    pytest.param({"token": RETIRED_TOKEN}, {}, 401, id="rotated-out-token"),
    pytest.param({"token": TOKEN[:-1]}, {}, 401, id="shorter"),
    pytest.param({"token": f" {TOKEN.upper()} "}, {}, 401, id="other-case"),
    pytest.param({"token": ""}, {}, 401, id="empty-token"),
    pytest.param({"password": TOKEN}, {}, 401, id="no-token-field"),
    pytest.param({"token": TOKEN}, {"Origin": "https://evil.example"}, 403, id="another-sites-page"),
    pytest.param({"token": TOKEN}, {"Origin": "null"}, 403, id="opaque-origin"),
    pytest.param({"token": TOKEN}, {"Sec-Fetch-Site": "cross-site"}, 403, id="cross-site-fetch"),
]


@pytest.mark.parametrize(("form", "headers", "expected"), LOGIN_FORGERIES)
async def test_console_sign_in_refused(
    doors: Doors, form: dict[str, str], headers: dict[str, str], expected: int
) -> None:
    before = await settled(doors.bridge)
    status, page, sent = await doors.request("POST", "/console/login", data=form, headers=headers)
    assert status == expected and "Set-Cookie" not in sent
    assert "csrf-token" not in page  # the sign-in page again, no signed-in page
    assert len(doors.bridge.app[CONSOLE_SESSIONS]) == 0
    assert stored(doors.bridge.settings.store_file) == before


CONSOLE_FORGERIES = [
    pytest.param("made-up", "own", {}, 401, id="made-up-cookie"),
    pytest.param("token", "own", {}, 401, id="operator-token-as-cookie"),
    pytest.param("signed-out", "own", {}, 401, id="signed-out-session"),
    pytest.param("expired", "own", {}, 401, id="expired-session"),
    pytest.param("own", None, {}, 403, id="no-csrf-token"),
    pytest.param("own", "made-up", {}, 403, id="wrong-csrf-token"),
    pytest.param("own", "other", {}, 403, id="another-sessions-csrf-token"),
    pytest.param("own", "cookie", {}, 403, id="session-id-as-csrf-token"),
    pytest.param("own", "own", {"Origin": "https://evil.example"}, 403, id="another-sites-page"),
    pytest.param("own", "own", {"Origin": "null"}, 403, id="opaque-origin"),
    pytest.param("own", "own", {"Sec-Fetch-Site": "cross-site"}, 403, id="cross-site-fetch"),
    pytest.param("own", "own", {"Sec-Fetch-Site": "same-site"}, 403, id="sibling-site-fetch"),
]


@pytest.mark.parametrize(("cookie_of", "csrf_of", "headers", "expected"), CONSOLE_FORGERIES)
async def test_console_changes_need_a_live_session_its_csrf_token_and_our_origin(
    doors: Doors, cookie_of: str, csrf_of: str | None, headers: dict[str, str], expected: int
) -> None:
    await doors.join()
    own, other, gone = await sign_in(doors), await sign_in(doors), await sign_in(doors)
    status, _, _ = await doors.request(
        "POST", "/console/logout", data={"csrf": gone.csrf}, headers={"Cookie": f"{COOKIE}={gone.cookie}"}
    )
    assert status == 303
    if cookie_of == "expired":
        sessions = doors.bridge.app[CONSOLE_SESSIONS]
        sessions._clock = lambda: time.monotonic() + LIFETIME_S + 1  # twelve hours on, as far as sessions know
    cookies = {"own": own.cookie, "made-up": uuid.uuid4().hex * 2, "token": TOKEN, "signed-out": gone.cookie}
    cookie = cookies[cookie_of] if cookie_of in cookies else own.cookie  # expired: her own, twelve hours on
    csrfs = {"own": own.csrf, "made-up": uuid.uuid4().hex, "other": other.csrf, "cookie": own.cookie}
    sent = {"Cookie": f"{COOKIE}={cookie}", **headers}
    if csrf_of is not None:
        sent["X-CSRF-Token"] = csrfs[csrf_of]
    before = await settled(doors.bridge)
    for method, path, body in await admin_changes(doors):
        status, answer, _ = await doors.request(method, f"/api/v1{path}", json=body, headers=sent)
        assert status == expected, (method, path, answer)
    if expected == 401:
        for path in [f"/api/v1{read}" for read in ADMIN_READS] + ["/console/events", "/console/session"]:
            status, _, _ = await doors.request("GET", path, headers=sent)
            assert status == 401, path
    else:
        # Signed in but refused: signing out needs the CSRF token too, and the session lives on.
        form = {"csrf": csrfs[csrf_of]} if csrf_of is not None else {}
        status, _, _ = await doors.request("POST", "/console/logout", data=form, headers=sent)
        assert status == 403
        status, _, _ = await doors.request("GET", "/console/session", headers={"Cookie": f"{COOKIE}={own.cookie}"})
        assert status == 200
    assert stored(doors.bridge.settings.store_file) == before
    await doors.nothing_relayed(marker())


async def test_console_change_with_session_csrf_and_origin_goes_through(doors: Doors) -> None:
    """The positive side of the table: the signed-in console's own request pauses the meeting."""
    own = await sign_in(doors)
    headers = {"Cookie": f"{COOKIE}={own.cookie}", "X-CSRF-Token": own.csrf, "Origin": doors.bridge.base}
    status, answer, _ = await doors.request("PATCH", f"/api/v1/meetings/{CODE}", json={"paused": True}, headers=headers)
    assert status == 200 and answer["paused"] is True, answer


# secrets compared in constant time ----------------------------------------------------------------------

SECRET_NAMES = re.compile(r"secret|token|signature|csrf|password|cookie|digest", re.IGNORECASE)
SERVER_SIDE_ONLY = {("bot/admin/console_events.py", "owner == session.csrf")}
"""Comparisons of two values the server made itself: no guess of a caller's is being timed."""
EQUALITY = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def test_doors_compare_secrets_only_in_constant_time() -> None:
    """No door or sign-in compares a secret, token, signature or CSRF token with == or in (which stop at the first
    differing byte); they use hmac.compare_digest, as does the Standard Webhooks library the webhook door uses."""
    root = Path(__file__).parents[2]
    modules = [*sorted((root / "bot" / "channels").glob("*.py")), *sorted((root / "bot" / "admin").glob("*.py"))]
    found = []
    for path in [*modules, root / "bot" / "demo.py"]:
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Compare) or not any(isinstance(op, EQUALITY) for op in node.ops):
                continue
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            where = (path.relative_to(root).as_posix(), ast.get_source_segment(source, node))
            if any(SECRET_NAMES.search(name) for name in names) and where not in SERVER_SIDE_ONLY:
                found.append(where)
    assert found == []
    assert "hmac.compare_digest" in inspect.getsource(Webhook.verify)
