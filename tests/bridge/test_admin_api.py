"""The admin API end to end: the real bridge on the sandbox, driven over loopback with the operator token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.admin.openapi import document
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.admin import ANN, CODE, TOKEN, Admin, start_admin
from tests.support.bridge import wait_for
from tests.support.sandbox import Control


@pytest.fixture
async def admin(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Admin]:
    async for a in start_admin(control, info, tmp_path):
        yield a


def api_routes(admin: Admin) -> set[tuple[str, str]]:
    """(method, path under /api/v1) of every route the running app serves there."""
    served = set()
    for route in admin.bridge.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/v1/") and route.method != "HEAD":
            served.add((route.method.lower(), path.removeprefix("/api/v1")))
    return served


# auth and the document ----------------------------------------------------------------------------------------


async def test_without_a_token_configured_the_api_is_off(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    async for off in start_admin(control, info, tmp_path, token=None):
        assert api_routes(off) == set()
        for path in ("/meetings", "/openapi.json", "/status"):
            assert await _plain_status(off, path) == 404


async def _plain_status(admin: Admin, path: str) -> int:
    assert admin.bridge.http is not None
    async with admin.bridge.http.get(f"{admin.bridge.base}/api/v1{path}", headers={"Authorization": "Bearer x"}) as r:
        return r.status


async def test_every_route_answers_401_without_the_right_token(admin: Admin) -> None:
    for method, path in sorted(api_routes(admin)):
        if path == "/openapi.json":
            continue
        concrete = path.replace("{id}", "x")
        for token in (None, "wrong-token-wrong-token", TOKEN + "x", TOKEN[:-1]):
            status, body = await admin.api(method.upper(), concrete, token=token)
            assert status == 401, (method, path, token)
            assert body["error"] == "unauthorized" and body["reason"]
    assert admin.bridge.http is not None
    for header in (f"Basic {TOKEN}", TOKEN, f"Bearer  {TOKEN}x", "Bearer"):
        async with admin.bridge.http.get(
            f"{admin.bridge.base}/api/v1/meetings", headers={"Authorization": header}
        ) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["error"] == "unauthorized"
    # An unknown path is no way around the lock either.
    assert (await admin.api("GET", "/nothing-here", token=None))[0] == 401


async def test_openapi_document_matches_the_served_routes(admin: Admin) -> None:
    status, doc = await admin.api("GET", "/openapi.json", token=None)
    assert status == 200 and doc == json.loads(json.dumps(document()))
    assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": "/api/v1"}]
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == api_routes(admin)
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path != "/openapi.json":
                assert "401" in op["responses"], (method, path)
            if "{id}" in path:
                assert any(p["in"] == "path" and p["name"] == "id" for p in op["parameters"]), (method, path)
            if method in ("post", "patch") and path.startswith("/meetings"):
                assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"]


def test_openapi_document_is_valid() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document())


async def test_errors_are_json_even_from_the_router(admin: Admin) -> None:
    status, body = await admin.api("GET", "/nothing-here")
    assert status == 404 and body["error"] == "not_found"
    status, body = await admin.api("PUT", "/meetings")
    assert status == 405 and body["error"] == "method_not_allowed"
    status, body = await admin.api("POST", "/meetings", raw=b"{" + b" " * 300_000 + b"}")
    assert status == 413 and body["reason"]
    for raw in (b"{nope", b"[1, 2]", b"NaN", b'{"link": NaN}', b"", b"\xff\xfe"):
        status, body = await admin.api("POST", "/meetings", raw=raw)
        assert status == 400 and body["reason"].startswith("body"), raw


# meetings ----------------------------------------------------------------------------------------------------


async def test_meetings_list_get_and_unknown(admin: Admin) -> None:
    [listed] = (await admin.ok("GET", "/meetings"))["meetings"]
    assert listed["code"] == CODE and listed["name"] == "Weekly sync" and listed["source"] == "config"
    assert listed["threadId"] == admin.meeting["threadId"] and listed["paused"] is False
    assert listed["identityMode"] == "per_user" and listed["allow"] == ["*"] and listed["activeSessions"] == 0
    assert await admin.ok("GET", f"/meetings/{listed['id']}") == listed
    assert await admin.ok("GET", f"/meetings/{CODE}") == listed
    for ref in ("m-nope", "999999", "%2F..%2F"):
        status, body = await admin.api("GET", f"/meetings/{ref}")
        assert status == 404 and body["error"] == "not_found"


async def test_add_meeting_and_its_refusals(admin: Admin) -> None:
    other = await admin.control.meeting(subject="Planning")
    status, added = await admin.api("POST", "/meetings", {"link": other["joinWebUrl"], "code": "5150"})
    assert status == 201, added
    assert added["code"] == "5150" and added["source"] == "runtime" and added["threadId"] == other["threadId"]
    assert await admin.ok("GET", f"/meetings/{added['id']}") == added
    status, body = await admin.api("POST", "/meetings", {"link": other["joinWebUrl"]})
    assert status == 409 and body["error"] == "duplicate_meeting" and body["id"] == added["id"]
    third = await admin.control.meeting(subject="Retro")
    status, body = await admin.api("POST", "/meetings", {"link": third["joinWebUrl"], "code": CODE})
    assert status == 409 and body["error"] == "duplicate_code"
    status, fresh = await admin.api("POST", "/meetings", {"link": third["joinWebUrl"], "identityMode": "shared"})
    assert status == 201 and fresh["code"].isdigit() and fresh["identityMode"] == "shared"
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "body"),
        ({"link": 5}, "link"),
        ({"link": "https://example.com/x"}, "link"),
        ({"link": other["joinWebUrl"], "code": "12"}, "code"),
        ({"link": other["joinWebUrl"], "code": 123456}, "code"),
        ({"link": other["joinWebUrl"], "bogus": 1}, "bogus"),
        ({"link": other["joinWebUrl"], "identityMode": "solo"}, "identityMode"),
        ({"link": other["joinWebUrl"], "displayNameTemplate": "{nick}"}, "displayNameTemplate"),
        ({"link": other["joinWebUrl"], "smsSegmentCap": "3"}, "smsSegmentCap"),
        ({"link": other["joinWebUrl"], "allow": "*"}, "allow"),
        ({"graphMeetingId": "abc"}, "body"),
        ({"link": other["joinWebUrl"], "name": "bell\x07"}, "name"),
    ]
    for body_in, field in bad:
        status, body = await admin.api("POST", "/meetings", body_in)
        assert status == 400, (body_in, body)
        assert body["error"] == "bad_request" and body["reason"].startswith(field), (body_in, body)
    organizer = admin.meeting["organizerId"].removeprefix("8:orgid:")
    status, body = await admin.api("POST", "/meetings", {"graphMeetingId": "MSnope", "organizerId": organizer})
    assert status == 422 and body["error"] == "lookup_failed" and body["reason"]
    assert len((await admin.ok("GET", "/meetings"))["meetings"]) == 3


async def test_patch_meeting_policy(admin: Admin) -> None:
    changes = {
        "name": "Renamed",
        "allow": ["webhook:app/*"],
        "identityMode": "shared",
        "displayNameTemplate": "{name} via {channel}",
        "smsSegmentCap": 2,
        "paused": True,
    }
    changed = await admin.ok("PATCH", f"/meetings/{CODE}", changes)
    assert {k: changed[k] for k in changes} == changes
    stored = await admin.bridge.store.meeting_by_code(CODE)
    assert stored is not None and stored.allow == ["webhook:app/*"] and stored.identity_mode == "shared"
    # "relay", the shared mode's old name, is still taken, and read as shared.
    old = await admin.ok("PATCH", f"/meetings/{CODE}", {"identityMode": "relay"})
    assert old["identityMode"] == "shared"
    assert (await admin.ok("PATCH", f"/meetings/{CODE}", {"smsSegmentCap": None}))["smsSegmentCap"] is None
    for body_in, field in [
        ({}, "body"),
        ({"paused": "yes"}, "paused"),
        ({"paused": None}, "paused"),
        ({"name": "  "}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"smsSegmentCap": 0}, "smsSegmentCap"),
        ({"smsSegmentCap": 2.5}, "smsSegmentCap"),
        ({"displayNameTemplate": "{name!r}"}, "displayNameTemplate"),
        ({"allow": [""]}, "allow"),
        ({"code": "1234"}, "code"),
        ({"identity_mode": "relay"}, "identity_mode"),
    ]:
        status, body = await admin.api("PATCH", f"/meetings/{CODE}", body_in)
        assert status == 400 and body["reason"].startswith(field), (body_in, body)
    status, body = await admin.api("PATCH", "/meetings/m-nope", {"paused": True})
    assert status == 404


async def test_meeting_added_at_run_time_works_for_a_webhook_user(admin: Admin) -> None:
    other = await admin.control.meeting(subject="Added live")
    await admin.ok("POST", "/meetings", {"link": other["joinWebUrl"], "code": "6006"})
    await admin.join("bob", code="6006")
    status, _ = await admin.send("bob", text="hello added meeting", code="6006")
    assert status == 202

    async def posted() -> bool:
        return "hello added meeting" in await admin.thread_texts(other)

    await wait_for(posted, what="message in the added meeting's thread")


async def test_pause_refuses_joins_and_unpause_lets_them_in(admin: Admin) -> None:
    await admin.ok("PATCH", f"/meetings/{CODE}", {"paused": True})
    status, body = await admin.send("ann", "join")
    assert status == 403 and body["error"] == "paused"
    await admin.ok("PATCH", f"/meetings/{CODE}", {"paused": False})
    await admin.join("ann")


async def test_remove_meeting_ends_its_sessions_and_tells_the_users(admin: Admin) -> None:
    await admin.join("ann")
    meeting_id = (await admin.ok("GET", f"/meetings/{CODE}"))["id"]
    status, _ = await admin.api("DELETE", f"/meetings/{CODE}")
    assert status == 204
    assert (await admin.api("GET", f"/meetings/{meeting_id}"))[0] == 404
    assert (await admin.api("DELETE", f"/meetings/{meeting_id}"))[0] == 404
    assert any("An operator took you out" in n["text"] for n in admin.receiver.of("notice", "ann"))
    assert await admin.bridge.store.sessions() == []
    status, body = await admin.send("ann", "join")
    assert status == 404 and body["error"] == "unknown_meeting"


# sessions and users ------------------------------------------------------------------------------------------


async def test_list_and_end_a_session(admin: Admin) -> None:
    session = await admin.join("ann")
    assert session["meetingId"] == (await admin.ok("GET", f"/meetings/{CODE}"))["id"]
    assert [s["id"] for s in (await admin.ok("GET", f"/sessions?meeting={CODE}&state=active"))["sessions"]] == [
        session["id"]
    ]
    assert (await admin.ok("GET", "/sessions?state=left,failed"))["sessions"] == []
    assert (await admin.ok("GET", f"/sessions/{session['id']}"))["state"] == "in_call"
    status, _ = await admin.api("DELETE", f"/sessions/{session['id']}")
    assert status == 204
    ended = await admin.ok("GET", f"/sessions/{session['id']}")
    assert ended["state"] == "left" and ended["reason"] == "ended by an operator"

    async def told() -> bool:
        return any("An operator took you out" in n["text"] for n in admin.receiver.of("notice", "ann"))

    await wait_for(told, what="ann told her session ended")
    status, body = await admin.api("DELETE", f"/sessions/{session['id']}")
    assert status == 409 and body["error"] == "conflict"
    for ref in ("abc", "99999", "1" * 40, "-1"):
        assert (await admin.api("DELETE", f"/sessions/{ref}"))[0] == 404, ref
    status, body = await admin.api("GET", "/sessions?state=dancing")
    assert status == 400 and body["reason"].startswith("state")
    assert (await admin.api("GET", "/sessions?meeting=m-nope"))[0] == 404
    assert (await admin.api("GET", "/sessions?color=red"))[0] == 400


async def test_block_unblock_and_get_a_user(admin: Admin) -> None:
    await admin.join("ann")
    path = f"/users/{quote(ANN, safe='')}"
    user = await admin.ok("GET", path)
    assert user["id"] == ANN and user["channel"] == "webhook:app" and user["blocked"] is False
    assert user["displayName"] == "Ann" and [s["state"] for s in user["sessions"]] == ["in_call"]
    blocked = await admin.ok("POST", f"{path}/block")
    assert blocked["blocked"] is True and [s["reason"] for s in blocked["sessions"]] == ["blocked by an operator"]
    for kind, text in (("join", None), ("message", "let me in")):
        status, body = await admin.send("ann", kind, text)
        assert status == 403 and body["error"] == "blocked"
    assert (await admin.ok("POST", f"{path}/unblock"))["blocked"] is False
    await admin.join("ann")
    for action in ("", "/block", "/unblock", "/forget"):
        method = "GET" if not action else "POST"
        status, body = await admin.api(method, f"/users/{quote('webhook:app/nobody', safe='')}{action}")
        assert status == 404 and body["error"] == "not_found", action


async def test_forget_a_user(admin: Admin) -> None:
    await admin.join("ann")
    status, _ = await admin.send("ann", text="remember me")
    assert status == 202
    path = f"/users/{quote(ANN, safe='')}"
    status, _ = await admin.api("POST", f"{path}/forget")
    assert status == 204
    assert (await admin.api("GET", path))[0] == 404
    assert (await admin.ok("GET", f"/deliveries?user={quote(ANN)}"))["deliveries"] == []
    assert (await admin.ok("GET", f"/sessions?user={quote(ANN)}"))["sessions"] == []


# deliveries and status ---------------------------------------------------------------------------------------


async def test_search_deliveries_and_status(admin: Admin) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    await admin.join("ann")
    status, sent = await admin.send("ann", text="tracked message")
    assert status == 202

    async def delivered() -> list[dict[str, Any]]:
        found = await admin.ok("GET", f"/deliveries?user={quote(ANN)}&direction=in&state=delivered")
        return list(found["deliveries"])

    [message] = await wait_for(delivered, what="ann's message delivered")
    assert message["id"] == sent["id"] and message["kind"] == "message" and message["attempts"] >= 1
    assert message["remoteId"] and message["body"] == {"text": "tracked message"} and message["lastError"] is None
    assert await admin.ok("GET", f"/deliveries/{message['id']}") == message
    assert (await admin.api("GET", "/deliveries/nope"))[0] == 404
    by_meeting = (await admin.ok("GET", f"/deliveries?meeting={CODE}"))["deliveries"]
    assert message["id"] in [d["id"] for d in by_meeting]
    assert [d["seq"] for d in by_meeting] == sorted((d["seq"] for d in by_meeting), reverse=True)
    assert len((await admin.ok("GET", f"/deliveries?meeting={CODE}&limit=1"))["deliveries"]) == 1
    since, until = quote(before.isoformat()), quote((datetime.now(UTC) + timedelta(seconds=5)).isoformat())
    window = (await admin.ok("GET", f"/deliveries?since={since}&until={until}"))["deliveries"]
    assert message["id"] in [d["id"] for d in window]
    assert (await admin.ok("GET", f"/deliveries?until={quote(before.isoformat())}"))["deliveries"] == []
    assert (await admin.ok("GET", f"/deliveries?since={until}"))["deliveries"] == []
    assert (await admin.ok("GET", "/deliveries?since=2000-01-01T00:00:00"))["deliveries"]  # no zone: UTC
    edge = quote("0001-01-01T00:00+14:00")  # cannot be moved to UTC
    for query in ("state=lost", "direction=up", "since=yesterday", "limit=0", "limit=x", f"until={edge}"):
        status, body = await admin.api("GET", f"/deliveries?{query}")
        assert status == 400 and body["reason"].startswith(query.split("=")[0]), query
    assert (await admin.api("GET", "/deliveries?meeting=m-nope"))[0] == 404

    # A user of a client with no callback URL: what the bridge tells them fails for good, with a reason.
    status, _ = await admin.bridge.send("nocb", admin.secret, {"type": "join", "user": {"id": "cy"}, "meeting": CODE})
    assert status == 202

    async def failed() -> list[dict[str, Any]]:
        return list((await admin.ok("GET", "/deliveries?state=failed&user=webhook:nocb/cy"))["deliveries"])

    [first, *_] = await wait_for(failed, what="a failed notice")
    assert "callback_url" in first["lastError"]
    summary = await admin.ok("GET", "/status")
    assert summary["meetings"] == {"total": 1, "paused": 0}
    assert summary["sessions"]["in_call"] >= 1 and set(summary["sessions"]) == {s.value for s in SessionState}
    assert set(summary["outbox"]) == {"in", "out"}
    assert summary["channels"]["webhook"] == ["app", "nocb"] and summary["acsEndpoint"].startswith("https://")
    assert (
        summary["lastErrors"][0]["userId"] == "webhook:nocb/cy" and "callback_url" in summary["lastErrors"][0]["error"]
    )


# never a 5xx ------------------------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_fields = st.sampled_from(
    [
        "link",
        "graphMeetingId",
        "organizerId",
        "code",
        "name",
        "identityMode",
        "displayNameTemplate",
        "allow",
        "smsSegmentCap",
        "paused",
    ]
) | st.text(max_size=12)
_likely = st.sampled_from(["relay", "per_user", "{name}", "{name} ({channel})", "12345", "*", ["*"], 3, True, ""])
_bodies = st.one_of(_values, st.dictionaries(_fields, _values | _likely, max_size=6))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies, link=st.booleans(), raw=st.binary(max_size=40))
async def test_random_bodies_never_cause_a_server_error(admin: Admin, body: Any, link: bool, raw: bytes) -> None:
    if link and isinstance(body, dict):
        body = {**body, "link": admin.meeting["joinWebUrl"]}
    for method, path in (("POST", "/meetings"), ("PATCH", f"/meetings/{CODE}")):
        for payload in (json.dumps(body).encode(), raw):
            status, answer = await admin.api(method, path, raw=payload)
            assert status < 500, (method, body, answer)
            if status >= 400:
                assert set(answer) >= {"error", "reason"}, answer
