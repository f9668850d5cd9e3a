"""SMS through the real azure-communication-sms SDK: sends, phones' inboxes, opt-out, repeatability and HMAC."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from azure.communication.sms.aio import SmsClient
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from bot.sandbox import SandboxInfo
from bot.sandbox.util import now, rfc1123
from tests.support.acs import hmac_headers, request
from tests.support.sandbox import Control

ANN = "+15551230001"
BOB = "+15551230002"
CAT = "+447700900123"
SMS_PATH = "/sms?api-version=2021-03-07"


def sms_client(info: SandboxInfo, connection_string: str | None = None) -> SmsClient:
    return SmsClient.from_connection_string(connection_string or info.connection_string, connection_verify=info.ca_file)


async def inbox(control: Control, number: str) -> list[dict[str, Any]]:
    body = await control.ok("GET", f"/sandbox/v1/phones/{quote(number, safe='')}/sms")
    return list(body["value"])


async def text(control: Control, phone: str, message: str) -> str:
    body = await control.ok(
        "POST", f"/sandbox/v1/phones/{quote(phone, safe='')}/sms", {"to": control.info.sms_number, "message": message}
    )
    return str(body["messageId"])


def send_body(info: SandboxInfo, message: str = "hi", **recipient: str) -> dict[str, Any]:
    return {
        "from": info.sms_number,
        "smsRecipients": [{"to": ANN} | recipient],
        "message": message,
        "smsSendOptions": {"enableDeliveryReport": False},
    }


async def raw_send(
    http: aiohttp.ClientSession, info: SandboxInfo, body: dict[str, Any], **sign: Any
) -> tuple[int, Any, dict[str, str]]:
    raw = json.dumps(body).encode()
    return await request(
        http, info, "POST", SMS_PATH, body=raw, headers=hmac_headers(info, "POST", SMS_PATH, raw, **sign)
    )


async def test_send_to_one_recipient_reaches_the_phone(control: Control, info: SandboxInfo) -> None:
    async with sms_client(info) as client:
        results = await client.send(info.sms_number, ANN, "Hello Ann", enable_delivery_report=True, tag="welcome")
    assert len(results) == 1
    result = results[0]
    assert result.to == ANN and result.successful and result.http_status_code == 202
    assert result.message_id is not None and result.message_id.startswith("Outgoing_") and result.error_message is None
    received = await inbox(control, ANN)
    assert [(m["messageId"], m["from"], m["message"], m["tag"]) for m in received] == [
        (result.message_id, info.sms_number, "Hello Ann", "welcome")
    ]
    assert received[0]["receivedTimestamp"].endswith("Z")


async def test_send_to_several_recipients_answers_one_result_each(control: Control, info: SandboxInfo) -> None:
    async with sms_client(info) as client:
        results = await client.send(info.sms_number, [ANN, BOB, CAT], "Meeting starts")
    assert [r.to for r in results] == [ANN, BOB, CAT]
    assert all(r.successful and r.http_status_code == 202 for r in results)
    assert len({r.message_id for r in results}) == 3
    for result in results:
        assert [m["messageId"] for m in await inbox(control, result.to)] == [result.message_id]


async def test_inbox_is_oldest_first_and_the_number_may_arrive_raw(control: Control, info: SandboxInfo) -> None:
    async with sms_client(info) as client:
        await client.send(info.sms_number, ANN, "one")
        await client.send(info.sms_number, ANN, "two")
    body = await control.ok("GET", f"/sandbox/v1/phones/{ANN}/sms")
    assert body["number"] == ANN and body["optedOut"] is False
    assert [m["message"] for m in body["value"]] == ["one", "two"]
    assert await inbox(control, BOB) == []


async def test_opted_out_recipient_gets_a_failure_until_start(control: Control, info: SandboxInfo) -> None:
    await text(control, ANN, "stop")
    async with sms_client(info) as client:
        blocked, ok = await client.send(info.sms_number, [ANN, BOB], "Are you there?")
        assert not blocked.successful and 400 <= blocked.http_status_code < 500 and blocked.message_id is None
        assert blocked.error_message is not None and "opted out" in blocked.error_message
        assert ok.successful
        assert await inbox(control, ANN) == []
        assert (await control.ok("GET", f"/sandbox/v1/phones/{quote(ANN)}/sms"))["optedOut"] is True
        await text(control, ANN, "START")
        [again] = await client.send(info.sms_number, ANN, "Welcome back")
    assert again.successful
    assert [m["message"] for m in await inbox(control, ANN)] == ["Welcome back"]


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "Cancel", "END", "quit."])
async def test_every_opt_out_keyword_blocks(control: Control, info: SandboxInfo, word: str) -> None:
    await text(control, BOB, word)
    async with sms_client(info) as client:
        [result] = await client.send(info.sms_number, BOB, "hello")
    assert not result.successful


async def test_a_message_that_only_mentions_stop_does_not_opt_out(control: Control, info: SandboxInfo) -> None:
    await text(control, BOB, "please don't stop")
    async with sms_client(info) as client:
        [result] = await client.send(info.sms_number, BOB, "ok")
    assert result.successful


async def test_invalid_recipient_number_fails_only_that_recipient(control: Control, info: SandboxInfo) -> None:
    async with sms_client(info) as client:
        bad, good = await client.send(info.sms_number, ["5551234", ANN], "hi")
    assert not bad.successful and bad.http_status_code == 400
    assert bad.error_message is not None and "phone number" in bad.error_message
    assert good.successful


async def test_wrong_access_key_is_refused(control: Control, info: SandboxInfo) -> None:
    wrong = base64.b64encode(b"not the key" * 6).decode()
    conn = info.connection_string.split("accesskey=")[0] + f"accesskey={wrong}"
    async with sms_client(info, conn) as client:
        with pytest.raises(ClientAuthenticationError) as caught:
            await client.send(info.sms_number, ANN, "hi")
    assert caught.value.status_code == 401
    assert await inbox(control, ANN) == []


async def test_sdk_sees_oversized_message_as_400(control: Control, info: SandboxInfo) -> None:
    async with sms_client(info) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.send(info.sms_number, ANN, "x" * 3000)
    assert caught.value.status_code == 400


async def test_tampered_body_is_401(control: Control, http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    signed = json.dumps(send_body(info, "original")).encode()
    sent = json.dumps(send_body(info, "tampered")).encode()
    headers = hmac_headers(info, "POST", SMS_PATH, signed)
    status, body, _ = await request(http, info, "POST", SMS_PATH, body=sent, headers=headers)
    assert status == 401, body
    assert await inbox(control, ANN) == []


async def test_stale_date_is_401(control: Control, http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    status, body, _ = await raw_send(http, info, send_body(info), date=rfc1123(now() - 20 * 60))
    assert status == 401 and "15 minutes" in body["error"]["message"]


async def test_from_another_number_is_400(control: Control, http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    status, body, _ = await raw_send(http, info, send_body(info) | {"from": "+18005550199"})
    assert status == 400 and info.sms_number in body["error"]["message"]
    status, body, _ = await raw_send(http, info, send_body(info) | {"from": "sandbox"})
    assert status == 400 and "E.164" in body["error"]["message"]


@pytest.mark.parametrize(
    ("message", "status"),
    [
        # GSM-7 packs 8 characters in 7 bytes: 2340 of them are exactly 2048 bytes.
        ("x" * 2340, 202),
        ("x" * 2341, 400),
        # Characters of GSM-7's extension table take two septets.
        ("€" * 1170, 202),
        ("€" * 1171, 400),
        # Anything outside GSM-7 makes the message UCS-2: two bytes per character.
        ("日" * 1024, 202),
        ("日" * 1025, 400),
    ],
)
async def test_message_size_limit_is_2048_bytes(
    control: Control, http: aiohttp.ClientSession, info: SandboxInfo, message: str, status: int
) -> None:
    answered, body, _ = await raw_send(http, info, send_body(info, message))
    assert answered == status, body
    if status == 400:
        assert "too long" in body["error"]["message"]


async def test_repeated_request_id_answers_the_first_result(
    control: Control, http: aiohttp.ClientSession, info: SandboxInfo
) -> None:
    first_sent = rfc1123(now())
    body = send_body(
        info, repeatabilityRequestId="7f1b2c3d-0000-4000-8000-000000000001", repeatabilityFirstSent=first_sent
    )
    status, first, _ = await raw_send(http, info, body)
    assert status == 202
    status, again, _ = await raw_send(http, info, body)
    assert status == 202
    assert again["value"] == first["value"]
    assert first["value"][0]["repeatabilityResult"] == "accepted"
    assert len(await inbox(control, ANN)) == 1
    other_time = dict(body, smsRecipients=[body["smsRecipients"][0] | {"repeatabilityFirstSent": rfc1123(now() - 60)}])
    status, rejected, _ = await raw_send(http, info, other_time)
    [item] = rejected["value"]
    assert (item["repeatabilityResult"], item["httpStatusCode"], item["successful"]) == ("rejected", 400, False)
    assert len(await inbox(control, ANN)) == 1


async def test_first_sent_outside_the_window_is_412(
    control: Control, http: aiohttp.ClientSession, info: SandboxInfo
) -> None:
    body = send_body(
        info, repeatabilityRequestId="7f1b2c3d-0000-4000-8000-000000000002", repeatabilityFirstSent=rfc1123(now() - 600)
    )
    status, answer, _ = await raw_send(http, info, body)
    assert status == 202
    [item] = answer["value"]
    assert (item["repeatabilityResult"], item["httpStatusCode"], item["successful"]) == ("rejected", 412, False)
    assert await inbox(control, ANN) == []


async def test_send_rate_limit_per_number(control: Control, http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    body = send_body(info)
    body["smsRecipients"] = [{"to": f"+1555200{i:04d}"} for i in range(100)]
    for _ in range(2):
        status, answer, _ = await raw_send(http, info, body)
        assert status == 202, answer
    status, answer, headers = await raw_send(http, info, body)
    assert status == 429 and int(headers["Retry-After"]) >= 1, answer


async def test_request_shape_errors_are_400(control: Control, http: aiohttp.ClientSession, info: SandboxInfo) -> None:
    for broken in (
        send_body(info) | {"smsRecipients": []},
        send_body(info) | {"message": ""},
        send_body(info) | {"smsSendOptions": {"enableDeliveryReport": "yes"}},
        send_body(info) | {"smsRecipients": [{"to": f"+1555300{i:04d}"} for i in range(101)]},
    ):
        status, answer, _ = await raw_send(http, info, broken)
        assert status == 400, (broken, answer)


async def test_phone_must_text_the_sandbox_number(control: Control, info: SandboxInfo) -> None:
    status, body = await control.call("POST", f"/sandbox/v1/phones/{quote(ANN)}/sms", {"to": BOB, "message": "hi"})
    assert status == 400 and info.sms_number in body["error"]["message"]
    status, _ = await control.call("POST", "/sandbox/v1/phones/555/sms", {"to": info.sms_number, "message": "hi"})
    assert status == 400
