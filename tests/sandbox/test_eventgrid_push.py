"""Event Grid push from the sandbox to a webhook receiver on loopback: handshakes, schemas, retries, drops, filters."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.communication.sms.aio import SmsClient

from bot.sandbox import SandboxInfo
from bot.sandbox.tls import ensure_tls
from tests.support.sandbox import Control

SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
SMS_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
CHAT_RECEIVED = "Microsoft.Communication.ChatMessageReceivedInThread"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
PHONE = "+15557770001"


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """A webhook endpoint that records every request and answers as the test scripts it."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Answers to the next notifications, in order; 200 once used up."""
    validation: str = "echo"
    allow_origin: bool = True

    def notifications(self, path: str = "/events") -> list[Hit]:
        return [
            h
            for h in self.hits
            if h.method == "POST" and h.headers.get("aeg-event-type") == "Notification" and h.path == path
        ]

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for hit in self.notifications():
            for event in hit.body if isinstance(hit.body, list) else [hit.body]:
                if event_type is None or event.get("eventType", event.get("type")) == event_type:
                    found.append(event)
        return found

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body: Any = await request.json() if request.can_read_body else None
        hit = Hit(request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, body)
        self.hits.append(hit)
        if request.method == "OPTIONS":
            headers = {"WebHook-Allowed-Origin": request.headers["WebHook-Request-Origin"]} if self.allow_origin else {}
            return web.Response(headers=headers)
        if hit.headers.get("aeg-event-type") == "SubscriptionValidation":
            code = body[0]["data"]["validationCode"]
            if self.validation == "wrong":
                return web.json_response({"validationResponse": "not-the-code"})
            if self.validation == "500":
                return web.Response(status=500)
            return web.json_response({"validationResponse": code})
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


async def start_receiver(ssl_context: ssl.SSLContext | None = None) -> tuple[Receiver, TestServer]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=ssl_context)
    receiver.url = str(server.make_url("/events"))
    return receiver, server


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec, server = await start_receiver()
    yield rec
    await server.close()


async def eventually(check: Callable[[], Any], what: str, within_s: float = 10.0) -> Any:
    """Poll until check() is truthy; fail after within_s seconds saying what never happened."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def subscribe(control: Control, endpoint: str, event_types: list[str], **extra: Any) -> dict[str, Any]:
    body = await control.ok(
        "POST", "/sandbox/v1/event-subscriptions", {"endpoint": endpoint, "eventTypes": event_types} | extra
    )
    return dict(body)


async def stats_when(control: Control, sub_id: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def poll() -> None:
        nonlocal latest
        while True:
            latest = (await control.ok("GET", f"/sandbox/v1/event-subscriptions/{sub_id}"))["stats"]
            if check(latest):
                return
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), 10)
    except TimeoutError:
        raise AssertionError(f"stats never matched; last {latest}") from None
    return latest


async def text(control: Control, message: str, phone: str = PHONE) -> str:
    body = await control.ok(
        "POST", f"/sandbox/v1/phones/{quote(phone, safe='')}/sms", {"to": control.info.sms_number, "message": message}
    )
    return str(body["messageId"])


async def test_eventgrid_handshake_then_sms_received(control: Control, info: SandboxInfo, receiver: Receiver) -> None:
    sub = await subscribe(control, receiver.url, [SMS_RECEIVED], schema="EventGrid", name="bridge-sms")
    assert (sub["endpoint"], sub["eventTypes"], sub["schema"]) == (receiver.url, [SMS_RECEIVED], "EventGrid")
    [validation] = receiver.hits
    assert validation.headers["aeg-event-type"] == "SubscriptionValidation"
    assert [e["eventType"] for e in validation.body] == [VALIDATION]
    message_id = await text(control, "JOIN 1234")
    [event] = await eventually(lambda: receiver.events(SMS_RECEIVED), "SMSReceived")
    assert event["id"] and event["subject"] and event["eventTime"].endswith("Z")
    assert event["topic"].startswith("/subscriptions/") and event["topic"].endswith("/communicationServices/sandbox")
    assert (event["metadataVersion"], event["dataVersion"]) == ("1", "1.0")
    data = event["data"]
    assert (data["messageId"], data["from"], data["to"], data["message"]) == (
        message_id,
        PHONE,
        info.sms_number,
        "JOIN 1234",
    )
    assert data["segmentCount"] == 1 and data["receivedTimestamp"].endswith("Z")
    [hit] = receiver.notifications()
    assert hit.headers["content-type"].startswith("application/json")
    assert hit.headers["aeg-subscription-name"] == "BRIDGE-SMS"
    assert hit.headers["aeg-delivery-count"] == "0"
    assert (hit.headers["aeg-data-version"], hit.headers["aeg-metadata-version"]) == ("1.0", "1")
    stats = await stats_when(control, sub["id"], lambda s: s["delivered"] == 1 and s["pending"] == 0)
    assert (stats["failed"], stats["dropped"]) == (0, 0)


async def test_cloudevents_handshake_then_delivery_report(
    control: Control, info: SandboxInfo, receiver: Receiver
) -> None:
    await subscribe(control, receiver.url, [SMS_REPORT], schema="CloudEvents")
    [options] = receiver.hits
    assert options.method == "OPTIONS" and options.headers["webhook-request-origin"] == "eventgrid.azure.net"
    async with SmsClient.from_connection_string(info.connection_string, connection_verify=info.ca_file) as client:
        [result] = await client.send(info.sms_number, PHONE, "You are in", enable_delivery_report=True, tag="t-42")
    [hit] = await eventually(receiver.notifications, "the delivery report")
    assert hit.headers["content-type"].startswith("application/cloudevents+json")
    event = hit.body
    assert (event["specversion"], event["type"]) == ("1.0", SMS_REPORT)
    assert event["source"].endswith("/communicationServices/sandbox") and event["id"] and event["time"]
    data = event["data"]
    assert (data["messageId"], data["from"], data["to"]) == (result.message_id, info.sms_number, PHONE)
    assert (data["deliveryStatus"], data["tag"]) == ("Delivered", "t-42")
    [attempt] = data["deliveryAttempts"]
    assert (attempt["segmentsSucceeded"], attempt["segmentsFailed"]) == (1, 0)
    assert data["receivedTimestamp"].endswith("Z")


async def test_cloudevents_batches_when_asked(control: Control, receiver: Receiver) -> None:
    await subscribe(control, receiver.url, [SMS_RECEIVED], schema="CloudEvents", maxEventsPerBatch=10)
    await text(control, "hello")
    [hit] = await eventually(receiver.notifications, "a batch")
    assert hit.headers["content-type"].startswith("application/cloudevents-batch+json")
    assert [e["type"] for e in hit.body] == [SMS_RECEIVED]


async def test_no_delivery_report_unless_asked(control: Control, info: SandboxInfo, receiver: Receiver) -> None:
    await subscribe(control, receiver.url, [SMS_REPORT, SMS_RECEIVED])
    async with SmsClient.from_connection_string(info.connection_string, connection_verify=info.ca_file) as client:
        await client.send(info.sms_number, PHONE, "quiet")
    await text(control, "marker")
    # One worker delivers in order, so once the marker arrived nothing came before it.
    await eventually(lambda: receiver.events(SMS_RECEIVED), "the marker")
    assert receiver.events(SMS_REPORT) == []


async def test_failures_are_retried_with_a_growing_delivery_count(control: Control, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    sub = await subscribe(control, receiver.url, [SMS_RECEIVED])
    await text(control, "retry me")
    stats = await stats_when(control, sub["id"], lambda s: s["delivered"] == 1)
    hits = receiver.notifications()
    assert [h.headers["aeg-delivery-count"] for h in hits] == ["0", "1", "2"]
    assert len({h.body[0]["id"] for h in hits}) == 1
    assert (stats["attempts"], stats["lastStatus"], stats["pending"]) == (3, 200, 0)


@pytest.mark.parametrize("status", [400, 401, 403, 413])
async def test_refusals_drop_the_event(control: Control, receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    sub = await subscribe(control, receiver.url, [SMS_RECEIVED])
    await text(control, "refused")
    await text(control, "accepted")
    stats = await stats_when(control, sub["id"], lambda s: s["dropped"] == 1 and s["delivered"] == 1)
    assert stats["attempts"] == 2
    assert [e["data"]["message"] for e in receiver.events()] == ["refused", "accepted"]


async def test_gives_up_after_max_attempts(control: Control, receiver: Receiver) -> None:
    receiver.statuses = [500, 500]
    sub = await subscribe(control, receiver.url, [SMS_RECEIVED], maxDeliveryAttempts=2)
    await text(control, "lost")
    await text(control, "kept")
    stats = await stats_when(control, sub["id"], lambda s: s["failed"] == 1 and s["delivered"] == 1)
    assert stats["attempts"] == 3


async def test_unreachable_endpoint_is_retried_then_counted_failed(control: Control) -> None:
    rec, server = await start_receiver()
    sub = await subscribe(control, rec.url, [SMS_RECEIVED], maxDeliveryAttempts=2)
    await server.close()
    await text(control, "nobody home")
    stats = await stats_when(control, sub["id"], lambda s: s["failed"] == 1)
    assert stats["lastError"] and stats["attempts"] == 2


async def test_https_receiver_signed_by_the_sandbox_ca(control: Control, info: SandboxInfo) -> None:
    tls = ensure_tls(Path(info.state_dir), "127.0.0.1")
    rec, server = await start_receiver(tls.server_context())
    try:
        assert rec.url.startswith("https://")
        await subscribe(control, rec.url, [SMS_RECEIVED])
        await text(control, "over TLS")
        await eventually(lambda: rec.events(SMS_RECEIVED), "delivery over https")
    finally:
        await server.close()


@pytest.mark.parametrize("mode", ["wrong", "500"])
async def test_failed_eventgrid_handshake_creates_nothing(control: Control, receiver: Receiver, mode: str) -> None:
    receiver.validation = mode
    status, body = await control.call("POST", "/sandbox/v1/event-subscriptions", {"endpoint": receiver.url})
    assert status == 400 and "handshake failed" in body["error"]["message"]
    assert (await control.ok("GET", "/sandbox/v1/event-subscriptions"))["value"] == []


async def test_failed_cloudevents_handshake_creates_nothing(control: Control, receiver: Receiver) -> None:
    receiver.allow_origin = False
    status, body = await control.call(
        "POST", "/sandbox/v1/event-subscriptions", {"endpoint": receiver.url, "schema": "CloudEvents"}
    )
    assert status == 400 and "WebHook-Allowed-Origin" in body["error"]["message"]
    assert (await control.ok("GET", "/sandbox/v1/event-subscriptions"))["value"] == []


async def test_bad_subscription_requests(control: Control, receiver: Receiver) -> None:
    for body in (
        {"endpoint": "http://example.com/events"},
        {"endpoint": "ftp://127.0.0.1/events"},
        {"endpoint": receiver.url, "schema": "Custom"},
        {"endpoint": receiver.url, "eventTypes": ["Microsoft.Communication.SMSRecieved"]},
        {"endpoint": receiver.url, "maxDeliveryAttempts": 0},
    ):
        status, answer = await control.call("POST", "/sandbox/v1/event-subscriptions", body)
        assert status == 400, (body, answer)
    assert receiver.hits == []


async def test_list_delete_and_reset(control: Control, receiver: Receiver) -> None:
    kept = await subscribe(control, receiver.url, [SMS_RECEIVED])
    gone = await subscribe(control, receiver.url.replace("/events", "/other"), [SMS_RECEIVED])
    listed = (await control.ok("GET", "/sandbox/v1/event-subscriptions"))["value"]
    assert {s["id"] for s in listed} == {kept["id"], gone["id"]}
    status, _ = await control.call("DELETE", f"/sandbox/v1/event-subscriptions/{gone['id']}")
    assert status == 204
    assert (await control.call("GET", f"/sandbox/v1/event-subscriptions/{gone['id']}"))[0] == 404
    await text(control, "after delete")
    await eventually(lambda: receiver.events(SMS_RECEIVED), "delivery to the kept subscription")
    assert receiver.notifications("/other") == []
    await control.ok("POST", "/sandbox/v1/reset")
    assert (await control.ok("GET", "/sandbox/v1/event-subscriptions"))["value"] == []


async def _acs_user_joins(control: Control, info: SandboxInfo, meeting: dict[str, Any]) -> None:
    async with CommunicationIdentityClient.from_connection_string(
        info.connection_string, connection_verify=info.ca_file
    ) as identity:
        _, token = await identity.create_user_and_token(["chat", "voip"])
    await control.ok(
        "POST",
        "/sandbox/v1/calls",
        {"meetingLink": meeting["joinWebUrl"], "displayName": "Ann"},
        headers={"Authorization": f"Bearer {token.token}"},
    )


async def test_chat_events_only_while_an_acs_user_is_in_the_call(
    control: Control, info: SandboxInfo, receiver: Receiver
) -> None:
    meeting = await control.meeting()
    await subscribe(control, receiver.url, [CHAT_RECEIVED, SMS_RECEIVED])
    megan = await control.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/teams-users", {"displayName": "Megan"})
    await control.ok(
        "POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", {"from": megan["id"], "html": "<p>early</p>"}
    )
    await text(control, "marker")
    await eventually(lambda: receiver.events(SMS_RECEIVED), "the marker")
    # Delivery is in order, so a chat event for the early post would have arrived before the marker.
    assert receiver.events(CHAT_RECEIVED) == []
    await _acs_user_joins(control, info, meeting)
    posted = await control.ok(
        "POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", {"from": megan["id"], "html": "<p>hi</p>"}
    )
    [event] = await eventually(lambda: receiver.events(CHAT_RECEIVED), "ChatMessageReceivedInThread")
    data = event["data"]
    assert (data["messageBody"], data["threadId"], data["senderDisplayName"]) == (
        "<p>hi</p>",
        meeting["threadId"],
        "Megan",
    )
    assert data["messageId"] == posted["id"]
    assert data["senderCommunicationIdentifier"]["rawId"] == megan["id"]


async def _chat_meeting(control: Control, info: SandboxInfo) -> tuple[dict[str, Any], dict[str, Any]]:
    """A meeting with an ACS user in its call (so it raises chat events) and a Teams user who posts."""
    meeting = await control.meeting()
    await _acs_user_joins(control, info, meeting)
    megan = await control.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/teams-users", {"displayName": "Megan"})
    return meeting, megan


async def _post(control: Control, meeting: dict[str, Any], sender: dict[str, Any], html: str) -> str:
    body = {"from": sender["id"], "html": html}
    return str((await control.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", body))["id"])


async def test_delivery_faults_lose_one_threads_events_and_deliver_the_rest(
    control: Control, info: SandboxInfo, receiver: Receiver
) -> None:
    lossy, megan = await _chat_meeting(control, info)
    other, olga = await _chat_meeting(control, info)
    sub = await subscribe(control, receiver.url, [CHAT_RECEIVED])
    faults = {"lose": 1.0, "subject": f"thread/{lossy['threadId']}/*"}
    shown = await control.ok("PUT", f"/sandbox/v1/event-subscriptions/{sub['id']}/faults", faults)
    assert shown["faults"]["lose"] == 1.0
    await _post(control, lossy, megan, "<p>lost</p>")
    kept = await _post(control, other, olga, "<p>kept</p>")
    stats = await stats_when(control, sub["id"], lambda s: s["delivered"] == 1 and s["lost"] == 1)
    assert stats["pending"] == 0
    assert [e["data"]["messageId"] for e in receiver.events(CHAT_RECEIVED)] == [kept]
    # Cleared, the thread's events flow again.
    await control.call("DELETE", f"/sandbox/v1/event-subscriptions/{sub['id']}/faults")
    again = await _post(control, lossy, megan, "<p>again</p>")
    await eventually(lambda: [e for e in receiver.events() if e["data"]["messageId"] == again], "the next event")


async def test_delivery_faults_duplicate_events_with_the_same_id_and_out_of_order(
    control: Control, info: SandboxInfo, receiver: Receiver
) -> None:
    meeting, megan = await _chat_meeting(control, info)
    faults = {"duplicate": 1.0, "delayS": 0.3, "seed": 7}
    sub = await subscribe(control, receiver.url, [CHAT_RECEIVED], faults=faults)
    posted = [await _post(control, meeting, megan, f"<p>{n}</p>") for n in range(3)]
    stats = await stats_when(control, sub["id"], lambda s: s["delivered"] == 6 and s["pending"] == 0)
    assert stats["duplicated"] == 3
    events = receiver.events(CHAT_RECEIVED)
    assert sorted(e["data"]["messageId"] for e in events) == sorted(posted * 2)
    assert len({e["id"] for e in events}) == 3  # a copy is the same event, as a redelivery is


@pytest.mark.parametrize(
    "faults",
    [{"lose": 1.5}, {"duplicate": -0.1}, {"lose": True}, {"subject": ""}, {"delayS": 600}, {"seed": "x"}, []],
)
async def test_bad_delivery_faults_are_refused(control: Control, receiver: Receiver, faults: Any) -> None:
    sub = await subscribe(control, receiver.url, [CHAT_RECEIVED])
    status, body = await control.call("PUT", f"/sandbox/v1/event-subscriptions/{sub['id']}/faults", faults)
    assert status == 400, body
    status, _ = await control.call(
        "POST", "/sandbox/v1/event-subscriptions", {"endpoint": receiver.url} | {"faults": faults}
    )
    assert status == 400
