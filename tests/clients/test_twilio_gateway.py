"""The Twilio-style gateway end to end: the sandbox's Messages API stand-in, its webhooks, and the bridge's door."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.channels.sms.base import InboundSms
from bot.channels.sms.twilio import (
    INBOUND_PATH,
    STATUS_PATH,
    TwilioDoor,
    TwilioGateway,
    twilio_signature,
    verify_twilio,
)
from bot.errors import AuthError, PermanentError, TransientError
from bot.sandbox import Sandbox, SandboxInfo
from bot.sandbox.bus import SMS_RECEIVED, SandboxEvent
from bot.sandbox.credentials import SandboxCredentials
from bot.sandbox.twilio_api import account_from
from bot.sandbox.twilio_webhooks import signature
from tests.support.sandbox import Control

ANN = "+15557380001"
BOB = "+15557380002"
NOW = datetime.now(UTC)


@dataclass
class Recorder:
    """A stand-in for the relay's SmsReceiver: records calls; can be told to fail the next receives."""

    texts: list[InboundSms] = field(default_factory=list)
    reports: list[tuple[str, bool, str | None]] = field(default_factory=list)
    fail_next: int = 0

    async def receive(self, sms: InboundSms) -> None:
        self.texts.append(sms)
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("the store is busy")

    async def delivery_report(self, provider_message_id: str, delivered: bool, detail: str | None) -> None:
        self.reports.append((provider_message_id, delivered, detail))


async def eventually(check: Callable[[], Any], what: str, within_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while not (value := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


async def serve(routes: list[web.RouteDef]) -> TestServer:
    app = web.Application()
    app.router.add_routes(routes)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def account(control: Control) -> dict[str, Any]:
    return dict(await control.ok("GET", "/sandbox/v1/twilio"))


@pytest.fixture
def gateway(account: dict[str, Any], http: aiohttp.ClientSession, info: SandboxInfo) -> Callable[..., TwilioGateway]:
    def make(
        status_callback_url: str | None = None, token: str | None = None, base: str | None = None
    ) -> TwilioGateway:
        return TwilioGateway(
            account["accountSid"],
            token or account["authToken"],
            account["number"],
            base or account["baseUrl"],
            status_callback_url,
            http,
            info.ca_file,
        )

    return make


@pytest.fixture
async def door_server() -> AsyncIterator[Callable[..., Awaitable[tuple[Recorder, str]]]]:
    """Starts TwilioDoors on loopback: (recorder, base URL)."""
    servers: list[TestServer] = []

    async def start(token: str, public_url: str | None = None, **kwargs: Any) -> tuple[Recorder, str]:
        recorder = Recorder()
        server = await serve(TwilioDoor(token, public_url, recorder, **kwargs).routes())
        servers.append(server)
        return recorder, str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


async def stats_when(control: Control, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The sandbox's Twilio delivery stats once check accepts them."""
    for _ in range(500):
        stats = dict((await control.ok("GET", "/sandbox/v1/twilio"))["stats"])
        if check(stats):
            return stats
        await asyncio.sleep(0.02)
    raise AssertionError(f"stats never matched; last {stats}")


async def inbox(control: Control, number: str) -> dict[str, Any]:
    return dict(await control.ok("GET", f"/sandbox/v1/phones/{quote(number, safe='')}/sms"))


async def text(control: Control, phone: str, to: str, message: str) -> str:
    body = await control.ok("POST", f"/sandbox/v1/phones/{quote(phone, safe='')}/sms", {"to": to, "message": message})
    return str(body["messageId"])


async def post_form(
    http: aiohttp.ClientSession, url: str, params: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    async with http.post(url, data=urlencode(params), headers=headers or {}) as resp:
        content_type = resp.headers.get("Content-Type", "")
        return resp.status, await resp.text(), content_type


def inbound_params(account: dict[str, Any], sid: str = "SM" + "a" * 32, body: str = "hello") -> dict[str, str]:
    return {"MessageSid": sid, "AccountSid": account["accountSid"], "From": ANN, "To": account["number"], "Body": body}


def signed(token: str, url: str, params: dict[str, str]) -> dict[str, str]:
    return {
        "X-Twilio-Signature": twilio_signature(token, url, params),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_signatures_match_twilios_published_vectors() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234", "From": "+14158675309"}
    params["To"] = "+18005551212"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert (
        twilio_signature("12345", url, repeated) == signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    )
    assert verify_twilio("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    # A port added or dropped by a proxy still verifies, as with Twilio's own validators.
    assert verify_twilio("12345", url.replace(".com", ".com:1234"), params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert verify_twilio("12345", url, params, "kvajT1Ptam85bY51eRf/AJRuM3w=")  # signed with :443
    assert not verify_twilio("12346", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_twilio("12345", url + "&x=1", params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_twilio("12345", url, params | {"Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_twilio("12345", url, params, "")


async def test_account_is_derived_from_the_persisted_credentials(
    account: dict[str, Any], info: SandboxInfo, tmp_path: Path
) -> None:
    assert re.fullmatch(r"AC[0-9a-f]{32}", account["accountSid"]) and re.fullmatch(
        r"[0-9a-f]{32}", account["authToken"]
    )
    assert account["number"] != info.sms_number and account["baseUrl"] == info.endpoint + "twilio"
    creds = SandboxCredentials.load_or_create(Path(info.state_dir))
    assert account_from(creds) == (account["accountSid"], account["authToken"])
    seen = []
    for _ in range(2):  # a restart on the same state folder keeps the account
        async with Sandbox(state_dir=tmp_path) as sb:
            assert sb.info is not None
            tls = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=sb.info.ca_file))
            async with aiohttp.ClientSession(connector=tls) as session:
                ctl = Control(session, sb.info)
                seen.append(await ctl.ok("GET", "/sandbox/v1/twilio"))
                # A webhook still being retried when the sandbox stops is cancelled and awaited, not left behind.
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    nobody = f"http://127.0.0.1:{sock.getsockname()[1]}/"
                await ctl.ok("PUT", "/sandbox/v1/twilio", {"smsUrl": nobody})
                await text(ctl, ANN, account["number"], "hi")
                await asyncio.sleep(0.05)
                assert any(t.get_name().startswith("twilio-inbound-") for t in asyncio.all_tasks())
        assert not any(t.get_name().startswith("twilio-inbound-") for t in asyncio.all_tasks())
    assert seen[0]["accountSid"] == seen[1]["accountSid"] != account["accountSid"]
    assert seen[0]["authToken"] == seen[1]["authToken"] != account["authToken"]


async def test_send_reaches_the_phone_and_signed_status_callbacks_follow(
    control: Control, account: dict[str, Any], gateway: Callable[..., TwilioGateway]
) -> None:
    calls: list[tuple[str, list[tuple[str, str]], bool]] = []

    async def status(request: web.Request) -> web.Response:
        form = parse_qsl(await request.text(), keep_blank_values=True)
        url = f"http://{request.host}{request.raw_path}"
        calls.append((url, form, verify_twilio(account["authToken"], url, form, request.headers["X-Twilio-Signature"])))
        return web.Response()

    server = await serve([web.post("/status", status)])
    try:
        callback_url = str(server.make_url("/status?ref=1"))
        sid = await gateway(callback_url).send(ANN, "Megan: hi there", key="k-1", first_sent=NOW)
        assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
        received = (await inbox(control, ANN))["value"]
        assert [(m["messageId"], m["from"], m["message"]) for m in received] == [
            (sid, account["number"], "Megan: hi there")
        ]
        await eventually(lambda: len(calls) == 2, "two status callbacks")
    finally:
        await server.close()
    assert all(url == callback_url and valid for url, _, valid in calls)
    forms = [dict(form) for _, form, _ in calls]
    assert [f["MessageStatus"] for f in forms] == ["sent", "delivered"]
    assert all(f["MessageSid"] == sid and f["To"] == ANN and f["AccountSid"] == account["accountSid"] for f in forms)


async def test_a_repeated_idempotency_token_sends_nothing_new(
    control: Control, gateway: Callable[..., TwilioGateway]
) -> None:
    gw = gateway()
    first = await gw.send(ANN, "once", key="k-same", first_sent=NOW)
    assert await gw.send(ANN, "once", key="k-same", first_sent=NOW) == first
    # The answer to a send that went through is lost: the outbox's retry with the same key is not sent again.
    await control.ok(
        "PUT", "/sandbox/v1/faults", {"rules": [{"path": "/twilio/*", "action": "drop_after", "count": 1}]}
    )
    with pytest.raises(TransientError):
        await gw.send(ANN, "lost answer", key="k-lost", first_sent=NOW)
    again = await gw.send(ANN, "lost answer", key="k-lost", first_sent=NOW)
    messages = [(m["messageId"], m["message"]) for m in (await inbox(control, ANN))["value"]]
    assert messages == [(first, "once"), (again, "lost answer")]


async def test_opted_out_phones_are_refused_until_start(
    control: Control, account: dict[str, Any], gateway: Callable[..., TwilioGateway]
) -> None:
    await text(control, ANN, account["number"], "STOP")
    assert (await inbox(control, ANN))["optedOut"] is True
    with pytest.raises(PermanentError, match="21610") as refused:
        await gateway().send(ANN, "anyone there?", key="k-stop", first_sent=NOW)
    assert not isinstance(refused.value, AuthError)
    await text(control, ANN, control.info.sms_number, "START")  # the opt-out state is shared by both numbers
    await gateway().send(ANN, "welcome back", key="k-start", first_sent=NOW)
    assert [m["message"] for m in (await inbox(control, ANN))["value"]] == ["welcome back"]


async def test_bad_credentials_and_bad_requests_are_permanent(
    account: dict[str, Any], gateway: Callable[..., TwilioGateway], http: aiohttp.ClientSession
) -> None:
    with pytest.raises(AuthError, match="20003"):
        await gateway(token="0" * 32).send(ANN, "hi", key="k-auth", first_sent=NOW)
    url = f"{account['baseUrl']}/2010-04-01/Accounts/{account['accountSid']}/Messages.json"
    async with http.post(url, data={"To": ANN, "From": account["number"], "Body": "x"}) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
        assert await resp.json() == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
    credentials = base64.b64encode(f"{account['accountSid']}:{account['authToken']}".encode()).decode()
    auth = {"Authorization": f"Basic {credentials}"}
    good = {"To": ANN, "From": account["number"], "Body": "x"}
    for form, code in [
        ({"From": account["number"], "Body": "x"}, 21604),
        ({"To": ANN, "From": account["number"]}, 21602),
        (good | {"To": "555-0100"}, 21211),
        (good | {"From": "+15550000000"}, 21606),
        (good | {"StatusCallback": "not a url"}, 21609),
    ]:
        async with http.post(url, data=form, headers=auth) as resp:
            body = await resp.json()
            assert (resp.status, body["code"], body["status"]) == (400, code, 400), body
    with pytest.raises(PermanentError, match="21211"):
        await gateway().send("12345", "hi", key="k-bad", first_sent=NOW)


async def test_503_and_an_unreachable_api_are_transient(
    control: Control, gateway: Callable[..., TwilioGateway]
) -> None:
    rule = {"method": "POST", "path": "/twilio/*", "action": "status", "status": 503, "retryAfter": 1, "count": 1}
    await control.ok("PUT", "/sandbox/v1/faults", {"rules": [rule]})
    with pytest.raises(TransientError) as busy:
        await gateway().send(ANN, "later", key="k-503", first_sent=NOW)
    assert busy.value.retry_after == 1.0 and "503" in str(busy.value)
    await gateway().send(ANN, "later", key="k-503", first_sent=NOW)
    assert [m["message"] for m in (await inbox(control, ANN))["value"]] == ["later"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(TransientError, match="unreachable"):
        await gateway(base=closed).send(ANN, "nobody home", key="k-down", first_sent=NOW)


async def test_a_phone_texting_the_twilio_number_reaches_the_door_signed(
    control: Control, account: dict[str, Any], sandbox: Sandbox, door_server: Any
) -> None:
    recorder, base = await door_server(account["authToken"])
    await control.ok("PUT", "/sandbox/v1/twilio", {"smsUrl": base + INBOUND_PATH})
    published: list[SandboxEvent] = []
    assert sandbox.world is not None
    sandbox.world.events.subscribe(published.append)
    try:
        sid = await text(control, ANN, account["number"], "JOIN 123456")
        await eventually(lambda: recorder.texts, "the inbound webhook")
        await text(control, BOB, control.info.sms_number, "to ACS")
    finally:
        sandbox.world.events.unsubscribe(published.append)
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert recorder.texts == [InboundSms("twilio", sid, ANN, account["number"], "JOIN 123456")]
    # Texts route by their To: the ACS number's raise SMSReceived, the Twilio number's only its webhook.
    assert [(e.type, e.data["from"]) for e in published] == [(SMS_RECEIVED, BOB)]
    inbound = (await stats_when(control, lambda s: s["inbound"]["delivered"] == 1))["inbound"]
    assert (inbound["attempts"], inbound["lastStatus"]) == (1, 200)


async def test_a_failed_webhook_is_retried_with_the_same_message_sid(
    control: Control, account: dict[str, Any], door_server: Any
) -> None:
    recorder, base = await door_server(account["authToken"])
    recorder.fail_next = 1
    await control.ok("PUT", "/sandbox/v1/twilio", {"smsUrl": base + INBOUND_PATH})
    sid = await text(control, ANN, account["number"], "hello")
    await eventually(lambda: len(recorder.texts) == 2, "the retried webhook")
    assert [t.provider_id for t in recorder.texts] == [sid, sid]
    # A door with the wrong auth token refuses (403): the sandbox gives up at once and the receiver hears nothing.
    forger, forged_base = await door_server("f" * 32)
    await control.ok("PUT", "/sandbox/v1/twilio", {"smsUrl": forged_base + INBOUND_PATH})
    await text(control, ANN, account["number"], "hello again")
    inbound = await stats_when(control, lambda s: s["inbound"]["dropped"] == 1)
    assert inbound["inbound"]["lastStatus"] == 403 and inbound["inbound"]["delivered"] == 1 and not forger.texts


async def test_forged_or_malformed_posts_are_refused(
    account: dict[str, Any], http: aiohttp.ClientSession, door_server: Any
) -> None:
    token = account["authToken"]
    recorder, base = await door_server(token)
    url = base + INBOUND_PATH
    params = inbound_params(account)
    good = signed(token, url, params)
    forged: list[tuple[str, dict[str, str], dict[str, str]]] = [
        (url, params, {"Content-Type": "application/x-www-form-urlencoded"}),  # unsigned
        (url, params, signed("0" * 32, url, params)),  # another account's token
        (url, params | {"Body": "tampered"}, good),
        (url, params | {"Extra": "1"}, good),
        (url, params, signed(token, "https://elsewhere.example/channels/twilio-sms", params)),
        (url + "?x=1", params, good),
        (base + STATUS_PATH, params | {"MessageStatus": "delivered"}, good),
    ]
    for target, form, headers in forged:
        status, body, _ = await post_form(http, target, form, headers)
        assert status == 403 and "bad_signature" in body, (target, form, status, body)
    assert not recorder.texts and not recorder.reports
    status, body, _ = await post_form(http, url, {"MessageSid": "SM1"}, signed(token, url, {"MessageSid": "SM1"}))
    assert status == 400 and "From, To, Body" in body
    async with http.post(url, data=b"{}", headers={"X-Twilio-Signature": "x", "Content-Type": "application/json"}) as r:
        assert r.status == 400
    status, body, content_type = await post_form(http, url, params, good)
    assert (status, body, content_type.split(";")[0]) == (
        200,
        '<?xml version="1.0" encoding="UTF-8"?><Response/>',
        "text/xml",
    )
    assert [t.provider_id for t in recorder.texts] == [params["MessageSid"]]


async def test_the_signed_url_is_the_public_one_behind_a_proxy(
    account: dict[str, Any], http: aiohttp.ClientSession, door_server: Any
) -> None:
    token, params = account["authToken"], inbound_params(account)
    public = "https://bridge.example.com/channels/twilio-sms?tenant=a"
    proxy = {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "bridge.example.com, proxy.internal"}
    trusting, trusting_base = await door_server(token, trust_forwarded=True)
    naive, naive_base = await door_server(token)
    configured, configured_base = await door_server(token, public)
    for base, headers, expected in [
        (trusting_base, proxy, 200),
        (naive_base, proxy, 403),  # forwarded headers are not trusted unless configured
        (configured_base, {}, 200),
    ]:
        status, _, _ = await post_form(
            http, base + INBOUND_PATH + "?tenant=a", params, headers | signed(token, public, params)
        )
        assert status == expected, (base, status)
    local = configured_base + INBOUND_PATH + "?tenant=a"
    status, _, _ = await post_form(http, local, params, signed(token, local, params))
    assert status == 403  # the configured public URL is the only one accepted
    assert len(trusting.texts) == len(configured.texts) == 1 and not naive.texts
    public_status = "https://bridge.example.com/channels/twilio-sms/status"
    reporting, reporting_base = await door_server(token, None, status_url=public_status)
    report = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "failed", "ErrorCode": "30008"}
    status, _, _ = await post_form(http, reporting_base + STATUS_PATH, report, signed(token, public_status, report))
    assert status == 200 and reporting.reports == [(report["MessageSid"], False, "failed (error 30008)")]


async def test_final_delivery_states_reach_the_receiver(
    control: Control, account: dict[str, Any], gateway: Callable[..., TwilioGateway], door_server: Any
) -> None:
    recorder, base = await door_server(account["authToken"])
    gw = gateway(base + STATUS_PATH)
    await control.ok("PUT", "/sandbox/v1/twilio", {"undeliverable": [BOB]})
    delivered = await gw.send(ANN, "hi Ann", key="k-ann", first_sent=NOW)
    lost = await gw.send(BOB, "hi Bob", key="k-bob", first_sent=NOW)
    await eventually(lambda: len(recorder.reports) == 2, "two final delivery reports")
    assert sorted(recorder.reports) == sorted(
        [(delivered, True, "delivered"), (lost, False, "undelivered (error 30003)")]
    )
    assert (await inbox(control, BOB))["value"] == []
    # Each message had "sent" then its final state called back; only the final one is a report.
    await stats_when(control, lambda s: s["statusCallbacks"]["delivered"] == 4)
