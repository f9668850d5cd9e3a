"""The ACS SMS gateway and its Event Grid door against the sandbox, through the real azure-communication-sms SDK."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.communication.sms._generated.models import SmsSendResponseItem

from bot.acs.sms import AcsSmsGateway, repeatability_id, result_of, rfc1123
from bot.channels.sms.acs import PATH, SMS_DELIVERY_REPORT, SMS_RECEIVED, AcsSmsDoor
from bot.channels.sms.base import InboundSms
from bot.errors import AuthError, PermanentError, ThrottledError, TransientError
from bot.sandbox import SandboxInfo
from tests.support.sandbox import Control

SECRET = "s3cret-code"
ANN = "+15551230001"
BOB = "+15551230002"
SCHEMAS = ["EventGrid", "CloudEvents"]


@dataclass
class RecordingReceiver:
    """The relay's side of the door, as a double: records what it is handed, can fail the next calls."""

    received: list[InboundSms] = field(default_factory=list)
    reports: list[tuple[str, bool, str | None]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def receive(self, sms: InboundSms) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.received.append(sms)

    async def delivery_report(self, provider_message_id: str, delivered: bool, detail: str | None) -> None:
        self.reports.append((provider_message_id, delivered, detail))


@dataclass
class Door:
    receiver: RecordingReceiver
    url: str
    """The door's URL without the code."""

    def with_code(self, code: str | None = SECRET) -> str:
        return self.url if code is None else f"{self.url}?code={quote(code)}"


@pytest.fixture
async def door(control: Control) -> AsyncIterator[Door]:
    receiver = RecordingReceiver()
    handler = AcsSmsDoor(SECRET, receiver)
    app = web.Application()
    app.router.add_post(PATH, handler.handle)
    app.router.add_route("OPTIONS", PATH, handler.options)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Door(receiver, str(server.make_url(PATH)))
    await server.close()


@pytest.fixture
async def gateway(info: SandboxInfo, control: Control) -> AsyncIterator[AcsSmsGateway]:
    async with AcsSmsGateway(info.connection_string, info.sms_number, connection_verify=info.ca_file) as gw:
        yield gw


@pytest.fixture
async def plain() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def eventually(check: Callable[[], Any], what: str, within_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while not (value := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


async def inbox(control: Control, number: str) -> list[dict[str, Any]]:
    return list((await control.ok("GET", f"/sandbox/v1/phones/{quote(number, safe='')}/sms"))["value"])


async def phone_texts(control: Control, phone: str, message: str) -> str:
    body = await control.ok(
        "POST", f"/sandbox/v1/phones/{quote(phone, safe='')}/sms", {"to": control.info.sms_number, "message": message}
    )
    return str(body["messageId"])


async def subscribe(control: Control, endpoint: str, types: list[str], schema: str) -> None:
    await control.ok(
        "POST", "/sandbox/v1/event-subscriptions", {"endpoint": endpoint, "eventTypes": types, "schema": schema}
    )


async def faults(control: Control, **rule: Any) -> None:
    rule = {"method": "POST", "path": "/sms", "count": 1} | rule
    await control.ok("PUT", "/sandbox/v1/faults", {"rules": [rule]})


def new_key() -> str:
    return str(uuid.uuid4())


async def post(plain: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with plain.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


def sms_event(event_id: str, message_id: str = "Incoming_1", text: str = "hello", **data: Any) -> dict[str, Any]:
    fields = {"messageId": message_id, "from": ANN, "to": "+18005550100", "message": text} | data
    return {"id": event_id, "eventType": SMS_RECEIVED, "subject": "/phonenumber/x", "data": fields}


# the gateway ------------------------------------------------------------------------------------------


async def test_send_reaches_the_phone(gateway: AcsSmsGateway, control: Control, info: SandboxInfo) -> None:
    key = new_key()
    message_id = await gateway.send(ANN, "Hello Ann", key=key, first_sent=datetime.now(UTC))
    [sms] = await inbox(control, ANN)
    assert (sms["messageId"], sms["from"], sms["message"], sms["tag"]) == (
        message_id,
        info.sms_number,
        "Hello Ann",
        key,
    )
    assert gateway.name == "acs" and gateway.number == info.sms_number


async def test_lost_answer_then_retry_with_the_same_key_texts_once(
    info: SandboxInfo, control: Control, http: aiohttp.ClientSession
) -> None:
    key, first_sent = new_key(), datetime.now(UTC)
    # A caller's session is used and left open.
    async with AcsSmsGateway(
        info.connection_string, info.sms_number, connection_verify=info.ca_file, session=http
    ) as gateway:
        await faults(control, action="drop_after")
        with pytest.raises(TransientError):
            await gateway.send(BOB, "Only once", key=key, first_sent=first_sent)
        assert len(await inbox(control, BOB)) == 1  # the service did send it; only the answer was lost
        message_id = await gateway.send(BOB, "Only once", key=key, first_sent=first_sent)
    assert not http.closed
    assert [m["messageId"] for m in await inbox(control, BOB)] == [message_id]
    assert (await control.ok("GET", "/sandbox/v1/faults"))["injected"]["drop_after"] == 1


async def test_a_new_key_is_a_new_text(gateway: AcsSmsGateway, control: Control) -> None:
    first_sent = datetime.now(UTC)
    one = await gateway.send(BOB, "same words", key=new_key(), first_sent=first_sent)
    two = await gateway.send(BOB, "same words", key=new_key(), first_sent=first_sent)
    assert one != two and len(await inbox(control, BOB)) == 2


async def test_opted_out_recipient_is_permanent(gateway: AcsSmsGateway, control: Control) -> None:
    await phone_texts(control, ANN, "STOP")
    with pytest.raises(PermanentError) as caught:
        await gateway.send(ANN, "Are you there?", key=new_key(), first_sent=datetime.now(UTC))
    assert not isinstance(caught.value, AuthError) and "opted out" in str(caught.value)
    assert await inbox(control, ANN) == []


async def test_service_unavailable_is_transient_then_the_retry_sends(gateway: AcsSmsGateway, control: Control) -> None:
    key, first_sent = new_key(), datetime.now(UTC)
    await faults(control, action="status", status=503, retryAfter=2)
    with pytest.raises(TransientError) as caught:
        await gateway.send(ANN, "hello", key=key, first_sent=first_sent)
    assert caught.value.retry_after == 2 and not isinstance(caught.value, ThrottledError)
    assert await inbox(control, ANN) == []
    message_id = await gateway.send(ANN, "hello", key=key, first_sent=first_sent)
    assert [m["messageId"] for m in await inbox(control, ANN)] == [message_id]


async def test_throttled_is_transient(gateway: AcsSmsGateway, control: Control) -> None:
    await faults(control, action="status", status=429, retryAfter=1)
    with pytest.raises(ThrottledError) as caught:
        await gateway.send(ANN, "hello", key=new_key(), first_sent=datetime.now(UTC))
    assert caught.value.retry_after == 1


async def test_dropped_connection_is_transient(gateway: AcsSmsGateway, control: Control) -> None:
    await faults(control, action="drop_before")
    with pytest.raises(TransientError):
        await gateway.send(ANN, "hello", key=new_key(), first_sent=datetime.now(UTC))
    assert await inbox(control, ANN) == []


async def test_bad_access_key_is_an_auth_error(info: SandboxInfo, control: Control) -> None:
    wrong = base64.b64encode(b"not the key" * 6).decode()
    conn = info.connection_string.split("accesskey=")[0] + f"accesskey={wrong}"
    async with AcsSmsGateway(conn, info.sms_number, connection_verify=info.ca_file) as gateway:
        with pytest.raises(AuthError):
            await gateway.send(ANN, "hi", key=new_key(), first_sent=datetime.now(UTC))
    assert await inbox(control, ANN) == []


async def test_bad_request_is_permanent(gateway: AcsSmsGateway, control: Control) -> None:
    with pytest.raises(PermanentError) as caught:
        await gateway.send(ANN, "ж" * 1100, key=new_key(), first_sent=datetime.now(UTC))  # 2200 bytes in UCS-2
    assert "HTTP 400" in str(caught.value)
    with pytest.raises(PermanentError):
        await gateway.send(ANN, "", key=new_key(), first_sent=datetime.now(UTC))


async def test_first_sent_outside_the_window_is_permanent(gateway: AcsSmsGateway, control: Control) -> None:
    with pytest.raises(PermanentError) as caught:
        await gateway.send(ANN, "late", key=new_key(), first_sent=datetime.now(UTC) - timedelta(minutes=10))
    assert "HTTP 412" in str(caught.value)


def test_per_recipient_results_map_to_our_errors() -> None:
    def item(status: int, ok: bool = False, **extra: Any) -> SmsSendResponseItem:
        return SmsSendResponseItem(to=ANN, http_status_code=status, successful=ok, **extra)

    assert result_of(item(202, True, message_id="Outgoing_1")) == "Outgoing_1"
    with pytest.raises(ThrottledError):
        result_of(item(429, error_message="slow down"))
    with pytest.raises(TransientError) as transient:
        result_of(item(503, error_message="busy"))
    assert "busy" in str(transient.value)
    with pytest.raises(PermanentError) as refused:
        result_of(item(403, error_message="opted out"))
    assert not isinstance(refused.value, AuthError | TransientError)
    with pytest.raises(PermanentError):
        result_of(item(202, True))  # accepted but no id


def test_repeatability_fields() -> None:
    key = str(uuid.uuid4())
    assert repeatability_id(key) == key
    derived = repeatability_id("delivery-42")
    assert derived == repeatability_id("delivery-42") and uuid.UUID(derived) and derived != repeatability_id("43")
    when = datetime(2019, 3, 26, 17, 6, 51, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert rfc1123(when) == "Tue, 26 Mar 2019 16:06:51 GMT"
    assert rfc1123(datetime(2019, 3, 26, 16, 6, 51)) == "Tue, 26 Mar 2019 16:06:51 GMT"


# the door, fed by the sandbox's Event Grid --------------------------------------------------------------


@pytest.mark.parametrize("schema", SCHEMAS)
async def test_delivery_report_reaches_the_receiver(
    gateway: AcsSmsGateway, control: Control, door: Door, schema: str
) -> None:
    await subscribe(control, door.with_code(), [SMS_DELIVERY_REPORT], schema)
    message_id = await gateway.send(ANN, "You are in", key=new_key(), first_sent=datetime.now(UTC))
    await eventually(lambda: door.receiver.reports, "the delivery report")
    assert door.receiver.reports == [(message_id, True, "No error.")]
    assert door.receiver.received == []


@pytest.mark.parametrize("schema", SCHEMAS)
async def test_phone_text_reaches_the_receiver(control: Control, info: SandboxInfo, door: Door, schema: str) -> None:
    await subscribe(control, door.with_code(), [SMS_RECEIVED], schema)
    message_id = await phone_texts(control, ANN, "JOIN 123456")
    [sms] = await eventually(lambda: door.receiver.received, "SMSReceived")
    assert sms == InboundSms("acs", message_id, ANN, info.sms_number, "JOIN 123456")


async def test_cloudevents_batch_is_handed_over_in_full(control: Control, door: Door) -> None:
    await control.ok(
        "POST",
        "/sandbox/v1/event-subscriptions",
        {"endpoint": door.with_code(), "eventTypes": [SMS_RECEIVED], "schema": "CloudEvents", "maxEventsPerBatch": 10},
    )
    ids = [await phone_texts(control, ANN, f"text {n}") for n in range(3)]
    await eventually(lambda: len(door.receiver.received) == 3, "three texts")
    assert sorted(s.provider_id for s in door.receiver.received) == sorted(ids)


@pytest.mark.parametrize("code", [None, "wrong", ""])
async def test_wrong_code_is_refused_and_nothing_received(
    control: Control, door: Door, plain: aiohttp.ClientSession, code: str | None
) -> None:
    status, body = await control.call(
        "POST", "/sandbox/v1/event-subscriptions", {"endpoint": door.with_code(code), "eventTypes": [SMS_RECEIVED]}
    )
    assert status == 400 and "HTTP 401" in body["error"]["message"]  # the handshake itself was refused
    status, body = await post(plain, door.with_code(code), [sms_event("e-1")])
    assert status == 401 and body["error"] == "unauthorized"
    async with plain.options(door.with_code(code), headers={"WebHook-Request-Origin": "eventgrid.azure.net"}) as resp:
        assert resp.status == 401 and "WebHook-Allowed-Origin" not in resp.headers
    await phone_texts(control, ANN, "hello")
    await asyncio.sleep(0.2)
    assert door.receiver.received == [] and door.receiver.reports == []


# the door, posted to directly ---------------------------------------------------------------------------


async def test_handshakes_answered(door: Door, plain: aiohttp.ClientSession) -> None:
    validation = {
        "id": "v-1",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "data": {"validationCode": "code-123"},
    }
    assert await post(plain, door.with_code(), [validation]) == (200, {"validationResponse": "code-123"})
    origin = {"WebHook-Request-Origin": "eventgrid.azure.net"}
    async with plain.options(door.with_code(), headers=origin) as resp:
        assert resp.status == 200 and resp.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


async def test_repeated_event_id_is_handed_over_once(door: Door, plain: aiohttp.ClientSession) -> None:
    for _ in range(2):
        status, _body = await post(plain, door.with_code(), [sms_event("e-1")])
        assert status == 200
    assert [s.provider_id for s in door.receiver.received] == ["Incoming_1"]


async def test_a_bad_event_in_a_batch_is_skipped_the_rest_handed_over(
    door: Door, plain: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    bad = sms_event("e-bad", "Incoming_2", text="private words")
    del bad["data"]["to"]
    other = {"id": "e-other", "eventType": "Microsoft.Communication.ChatThreadCreated", "data": {}}
    with caplog.at_level(logging.WARNING, logger="bot.channels.sms.acs"):
        status, body = await post(plain, door.with_code(), [sms_event("e-1"), bad, other, "not an event"])
    assert status == 200 and body == {"received": 4, "handled": 1, "skipped": 2}
    assert [s.provider_id for s in door.receiver.received] == ["Incoming_1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("e-bad" in w and "data.to" in w for w in warnings)
    assert not any("private words" in w or ANN in w for w in warnings)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([sms_event("e-1", to=None)], "data.to"),
        ([{"id": "e-2", "eventType": SMS_DELIVERY_REPORT, "data": {"messageId": "m"}}], "data.deliveryStatus"),
        ({"id": "e-3", "type": SMS_RECEIVED, "data": "text"}, "data must be an object"),
        ([{"id": "e-4"}], "no eventType"),
        ("just a string", "an event or an array"),
    ],
)
async def test_unreadable_bodies_are_400_with_a_reason(
    door: Door, plain: aiohttp.ClientSession, body: Any, reason: str
) -> None:
    status, answer = await post(plain, door.with_code(), body)
    assert status == 400 and reason in answer["reason"]
    async with plain.post(door.with_code(), data=b"{not json") as resp:
        assert resp.status == 400
    assert door.receiver.received == [] and door.receiver.reports == []


async def test_single_cloudevent_delivery_report(door: Door, plain: aiohttp.ClientSession) -> None:
    event = {
        "specversion": "1.0",
        "id": "c-1",
        "type": SMS_DELIVERY_REPORT,
        "source": "/subscriptions/x",
        "data": {"messageId": "Outgoing_9", "deliveryStatus": "Failed", "deliveryStatusDetails": ""},
    }
    status, _body = await post(plain, door.with_code(), event)
    assert status == 200 and door.receiver.reports == [("Outgoing_9", False, "Failed")]


async def test_receiver_outage_is_503_and_the_redelivery_completes(door: Door, plain: aiohttp.ClientSession) -> None:
    door.receiver.failures.append(TransientError("store busy", retry_after=3))
    batch = [sms_event("e-1"), sms_event("e-2", "Incoming_2")]
    async with plain.post(door.with_code(), json=batch) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "3"
    assert door.receiver.received == []
    status, _body = await post(plain, door.with_code(), batch)
    assert status == 200
    assert [s.provider_id for s in door.receiver.received] == ["Incoming_1", "Incoming_2"]
