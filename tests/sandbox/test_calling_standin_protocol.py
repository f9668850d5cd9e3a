"""The stand-in Calling SDK's sandbox side over the wire, without a browser: the agent WebSocket's hello, joins,
token refresh and expiry, lingering legs and re-joins, CORS for localhost pages, and the control switches."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from azure.communication.identity import CommunicationUserIdentifier

from bot.sandbox import SandboxInfo
from bot.sandbox.calling_standin import PREFIX
from tests.support.acs import identity_client
from tests.support.meetings import AcsUser, join, new_user
from tests.support.sandbox import Control

MEETINGS = "/sandbox/v1/meetings"
WAIT_S = 10.0


class Agent:
    """A CallAgent's connection as the stand-in module makes it, spoken to by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, body: dict[str, Any]) -> None:
        await self.ws.send_json(body)

    async def next(self, kind: str | None = None) -> dict[str, Any]:
        """The next message (of `kind`, skipping others)."""
        while True:
            message = await asyncio.wait_for(self.ws.receive(), WAIT_S)
            assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data, self.ws.close_code)
            body: dict[str, Any] = message.json()
            if kind is None or body["type"] == kind:
                return body

    async def call(self, call_id: str, state: str) -> dict[str, Any]:
        while True:
            body = await self.next("call")
            if body["callId"] == call_id and body["state"] == state:
                return body

    async def join(self, meeting: dict[str, Any], **extra: Any) -> str:
        call_id = str(uuid.uuid4())
        await self.send({"type": "join", "callId": call_id, "meetingLink": meeting["joinWebUrl"], **extra})
        return call_id


def ssl_context(info: SandboxInfo) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=info.ca_file)


@asynccontextmanager
async def connect(
    http: aiohttp.ClientSession, info: SandboxInfo, origin: str | None = "http://localhost:9000"
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    url = info.endpoint.rstrip("/").replace("https://", "wss://") + PREFIX + "/agent"
    headers = {"Origin": origin} if origin else {}
    async with http.ws_connect(url, ssl=ssl_context(info), headers=headers) as ws:
        yield ws


@asynccontextmanager
async def agent(
    http: aiohttp.ClientSession, info: SandboxInfo, user: AcsUser, name: str = "Ann (SMS)"
) -> AsyncIterator[Agent]:
    async with connect(http, info) as ws:
        await ws.send_json({"type": "hello", "token": user.token, "displayName": name})
        a = Agent(ws)
        ready = await a.next()
        assert ready["type"] == "ready", ready
        yield a


async def hello_refusal(http: aiohttp.ClientSession, info: SandboxInfo, first: Any) -> tuple[dict[str, Any], int]:
    async with connect(http, info) as ws:
        await (ws.send_json(first) if isinstance(first, dict) else ws.send_str(first))
        body = await Agent(ws).next()
        await ws.receive()
        return body, int(ws.close_code or 0)


async def roster(control: Control, meeting: dict[str, Any]) -> dict[str, Any]:
    return dict((await control.ok("GET", f"{MEETINGS}/{meeting['id']}"))["roster"])


async def acs_in_call(control: Control, meeting: dict[str, Any]) -> list[str]:
    return [p["id"] for p in (await roster(control, meeting))["inCall"] if p.get("kind") == "acs"]


async def wait_until(check: Any, what: str) -> None:
    for _ in range(int(WAIT_S / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def short_token(control: Control, info: SandboxInfo, seconds: int) -> AcsUser:
    await control.ok("PUT", "/sandbox/v1/token-settings", {"lifetimeSeconds": seconds})
    return await new_user(info)


async def test_hello_then_join_connects_and_hang_up_leaves_0_0(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    async with agent(http, info, ann) as a:
        call_id = await a.join(meeting, muted=True)
        connected = await a.call(call_id, "connected")
        assert connected["threadId"] == meeting["threadId"]
        [entry] = [p for p in (await roster(control, meeting))["inCall"] if p["kind"] == "acs"]
        assert entry["id"] == call_id and entry["muted"] is True
        await a.send({"type": "hangUp", "callId": call_id})
        left = await a.call(call_id, "left")
        assert left["callEndReason"] == {"code": 0, "subCode": 0}
    assert await acs_in_call(control, meeting) == []


@pytest.mark.parametrize(
    ("first", "code", "sub_code"),
    [
        ({"type": "hello", "token": "not-a-token"}, 401, 44111),
        ({"type": "join"}, 400, 0),
        ("not json", 400, 0),
    ],
)
async def test_a_bad_hello_is_refused_with_the_sdk_error_and_closed(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession, first: Any, code: int, sub_code: int
) -> None:
    body, close_code = await hello_refusal(http, info, first)
    assert (body["type"], body["code"], body["subCode"]) == ("refused", code, sub_code)
    assert close_code == 4001


async def test_a_token_without_voip_or_expired_is_refused(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    chat_only = await new_user(info, scopes=("chat",))
    body, _ = await hello_refusal(http, info, {"type": "hello", "token": chat_only.token})
    assert (body["code"], body["subCode"]) == (401, 44113)
    expiring = await short_token(control, info, 2)
    await asyncio.sleep(2.5)
    body, _ = await hello_refusal(http, info, {"type": "hello", "token": expiring.token})
    assert (body["code"], body["subCode"]) == (401, 40235)


async def test_a_second_agent_for_the_same_identity_is_refused_409_40228(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    ann = await new_user(info)
    async with agent(http, info, ann):
        body, _ = await hello_refusal(http, info, {"type": "hello", "token": ann.token, "displayName": "Ann"})
        assert (body["code"], body["subCode"]) == (409, 40228)
    # Once the first connection is gone the identity may have an agent again.
    async with agent(http, info, ann):
        pass


async def test_a_display_name_over_256_characters_is_refused_400_40215(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    ann = await new_user(info)
    body, _ = await hello_refusal(http, info, {"type": "hello", "token": ann.token, "displayName": "A" * 257})
    assert (body["code"], body["subCode"]) == (400, 40215)


async def test_a_foreign_page_origin_cannot_open_an_agent(info: SandboxInfo, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with connect(http, info, origin="http://evil.example"):
            pass
    assert refused.value.status == 403


async def test_a_refreshed_token_extends_the_connection_and_a_foreign_one_is_refused(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    ann = await short_token(control, info, 30)
    bob = await new_user(info)
    async with agent(http, info, ann) as a:
        await a.send({"type": "token", "token": bob.token})
        assert (await a.next())["type"] == "tokenRefused"
        await control.ok("PUT", "/sandbox/v1/token-settings", {"lifetimeSeconds": 600})
        async with identity_client(info) as identities:
            fresh = await identities.get_token(CommunicationUserIdentifier(ann.id), ["voip"])
        await a.send({"type": "token", "token": fresh.token})
        assert (await a.next())["type"] == "token"
        [session] = (await control.ok("GET", "/sandbox/v1/call-agents"))["value"]
        assert session["tokenRefreshes"] == 1


async def test_a_token_that_runs_out_ends_the_calls_495_4507_and_the_connection(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    meeting = await control.meeting()
    ann = await short_token(control, info, 3)
    async with agent(http, info, ann) as a:
        call_id = await a.join(meeting)
        await a.call(call_id, "connected")
        failed = await a.call(call_id, "failed")
        assert failed["callEndReason"] == {"code": 495, "subCode": 4507}
        assert (await a.next())["reason"] == "invalidToken"
        await a.ws.receive()
        assert a.ws.close_code == 4401
    assert await acs_in_call(control, meeting) == []


async def test_a_vanished_connection_leaves_its_leg_for_the_grace_period_and_a_rejoin_is_a_new_leg(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    async with agent(http, info, ann) as a:
        old = await a.join(meeting)
        await a.call(old, "connected")
    # The page is gone without a goodbye: the leg stays in the call (grace 60 s by default).
    listing = await control.ok("GET", "/sandbox/v1/call-agents")
    assert [item["callId"] for item in listing["lingering"]] == [old]
    assert await acs_in_call(control, meeting) == [old]
    async with agent(http, info, ann) as b:
        new = await b.join(meeting)
        await b.call(new, "connected")
        assert sorted(await acs_in_call(control, meeting)) == sorted([old, new])
        await control.ok("PUT", "/sandbox/v1/call-settings", {"graceSeconds": 0.2})

        async def old_gone() -> bool:
            return await acs_in_call(control, meeting) == [new]

        await wait_until(old_gone, "the lingering leg to be dropped")
        thread = await control.ok("GET", f"{MEETINGS}/{meeting['id']}/messages")
        # The identity never left the thread: its new leg was connected when the old one was dropped.
        assert [m["type"] for m in thread["value"]].count("participantRemoved") == 0
        snapshot = await control.ok("GET", f"/sandbox/v1/calls/{old}", headers=ann.auth)
        assert snapshot["state"] == "failed" and snapshot["callEndReason"] == {"code": 0, "subCode": 4521}


async def test_a_goodbye_leaves_at_once_without_a_grace_period(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    async with agent(http, info, ann) as a:
        call_id = await a.join(meeting)
        await a.call(call_id, "connected")
        await a.send({"type": "bye"})
        await a.ws.receive()
    assert await acs_in_call(control, meeting) == []
    assert (await control.ok("GET", "/sandbox/v1/call-agents"))["lingering"] == []


async def test_interop_refusal_fails_joins_403_with_its_sub_code_on_both_call_apis(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    await control.ok("PUT", "/sandbox/v1/call-settings", {"interopRefusal": 5222})
    async with agent(http, info, ann) as a:
        call_id = await a.join(meeting)
        failed = await a.call(call_id, "failed")
        assert failed["callEndReason"] == {"code": 403, "subCode": 5222}
    await join(control, ann, meeting, "Ann", expect=403)
    assert (await roster(control, meeting))["lobby"] == []
    assert await acs_in_call(control, meeting) == []


async def test_any_end_reason_can_be_set_on_a_leg(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    async with agent(http, info, ann) as a:
        call_id = await a.join(meeting)
        await a.call(call_id, "connected")
        path = f"{MEETINGS}/{meeting['id']}/participants/{call_id}/end"
        await control.ok("POST", path, {"code": 987, "subCode": 65432})
        ended = await a.call(call_id, "failed")
        assert ended["callEndReason"] == {"code": 987, "subCode": 65432}


async def test_the_module_answers_cors_for_localhost_pages_only(info: SandboxInfo, http: aiohttp.ClientSession) -> None:
    url = info.endpoint.rstrip("/") + PREFIX + "/standin.js"
    async with http.get(url, headers={"Origin": "http://localhost:8123"}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:8123"
        assert resp.headers["Content-Type"].startswith("text/javascript")
        assert "export class CallClient" in await resp.text()
    async with http.get(url, headers={"Origin": "http://127.0.0.1:8123"}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    preflight = {"Origin": "http://localhost:8123", "Access-Control-Request-Headers": "authorization"}
    async with http.options(url, headers=preflight) as resp:
        assert resp.status == 204
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    async with http.options(url, headers=preflight | {"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with http.get(info.endpoint.rstrip("/") + PREFIX + "/README.md") as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sandbox/v1/call-settings", {"graceSeconds": -1}),
        ("/sandbox/v1/call-settings", {"graceSeconds": True}),
        ("/sandbox/v1/call-settings", {"interopRefusal": 1234}),
        ("/sandbox/v1/call-settings", {"grace": 1}),
        ("/sandbox/v1/token-settings", {"lifetimeSeconds": 1}),
        ("/sandbox/v1/token-settings", {"lifetimeSeconds": "10"}),
    ],
)
async def test_bad_call_switches_are_refused_400(control: Control, path: str, body: dict[str, Any]) -> None:
    status, answer = await control.call("PUT", path, body)
    assert status == 400, answer
    assert answer["error"]["message"]


async def test_bad_end_and_drop_requests_are_refused_400(control: Control, info: SandboxInfo) -> None:
    meeting = await control.meeting()
    ann = await new_user(info)
    leg = await join(control, ann, meeting, "Ann")
    base = f"{MEETINGS}/{meeting['id']}/participants/{leg['callId']}"
    for body in ({"code": -1, "subCode": 0}, {"code": 0}, {"code": "0", "subCode": 0}):
        status, _ = await control.call("POST", base + "/end", body)
        assert status == 400
    status, answer = await control.call("POST", base + "/drop")
    assert status == 400 and "live page connection" in answer["error"]["message"]
    status, _ = await control.call("DELETE", base + "?subCode=42")
    assert status == 400


async def test_a_reset_cuts_every_agent_connection(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession
) -> None:
    ann = await new_user(info)
    async with agent(http, info, ann) as a:
        await control.ok("POST", "/sandbox/v1/reset")
        message = await asyncio.wait_for(a.ws.receive(), WAIT_S)
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    assert (await control.ok("GET", "/sandbox/v1/call-agents"))["value"] == []


async def test_a_page_that_leaves_before_hello_leaves_nothing_behind(
    control: Control, info: SandboxInfo, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(http, info) as ws:
        await ws.close()
    await asyncio.sleep(0.2)  # let the sandbox's handler finish
    assert (await control.ok("GET", "/sandbox/v1/call-agents"))["value"] == []
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
