"""Bad bodies at every inbound door, sent with valid authentication so that parsing is what is tested: oversized,
non-UTF-8, deeply nested, wrongly typed, empty and mislabelled bodies are answered 4xx with a JSON reason, never
5xx, and nothing of them is stored."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.admin.console_auth import COOKIE, CSRF_HEADER
from bot.channels import eventgrid, webhook
from bot.channels.chat_events import CHAT_EVENTS
from bot.channels.chat_events import PATH as EVENTS_PATH
from bot.channels.eventgrid import VALIDATION_EVENT
from bot.channels.sms import twilio as sms_twilio
from bot.channels.sms.acs import PATH as SMS_EVENTS_PATH
from bot.channels.sms.acs import SMS_DELIVERY_REPORT, SMS_RECEIVED
from bot.channels.sms.twilio import INBOUND_PATH, STATUS_PATH, twilio_signature
from bot.config import AdminSection, MeetingConfig, Settings
from bot.embedded import twilio_on_sandbox
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, bridge_settings, client_for, new_secret
from tests.support.properties import PROFILE
from tests.support.sandbox import Control

TOKEN = "operator-token-for-bad-bodies-0123"
CHAT_SECRET = "chat-events-secret-0123456789"
SMS_SECRET = "sms-events-secret-0123456789"
CODE = "737373"
ADMIN_LIMIT = 256 * 1024  # the app's client_max_size, which bounds the admin API's and the console's bodies
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
PHONE = "+15550142"

Case = tuple[str, Any, str | None]
"""(label, body as bytes or an async chunk source, Content-Type or None for none at all)."""


# ---------------------------------------------------------------- the bodies


async def _chunks(total: int) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked), so the door has to stop reading on its own."""
    sent = 0
    while sent < total:
        piece = min(16 * 1024, total - sent)
        sent += piece
        yield b"[" * piece


def unreadable(limit: int, content_type: str = JSON) -> list[Case]:
    """Bodies no JSON door can read, sized for a door that takes at most `limit` bytes."""
    depth = min(100_000, (limit - 16) // 2)  # deep, yet inside the size limit: the parser has to face it
    return [
        ("empty", b"", content_type),
        ("whitespace", b" \r\n\t ", content_type),
        ("non-UTF-8", b"\xff\xfe\x00{\x80", content_type),
        ("invalid UTF-8 inside a string", b'{"text": "caf\xc3\x28"}', content_type),
        ("latin-1", '{"text": "café"}'.encode("latin-1"), content_type),
        ("UTF-16", json.dumps({"type": "message"}).encode("utf-16"), content_type),
        ("deeply nested arrays", b"[" * depth + b"]" * depth, content_type),
        ("deeply nested objects", b'{"a":' * (depth // 3) + b"1" + b"}" * (depth // 3), content_type),
        ("unclosed nesting", b"[" * depth, content_type),
        ("truncated", b'{"type": "mess', content_type),
        ("NaN", b"NaN", content_type),
        ("Infinity inside", b'{"a": -Infinity}', content_type),
        ("a number", b"42", content_type),
        ("a string", b'"hello"', content_type),
        ("null", b"null", content_type),
        ("true", b"true", content_type),
        ("a lone surrogate", b'{"text": "\\ud800"}', content_type),
        ("oversized", b'{"text": "' + b"a" * (limit + 1) + b'"}', content_type),
        ("oversized, chunked", _chunks(limit + 64 * 1024), content_type),
    ]


def mislabelled(body: bytes) -> list[Case]:
    """A body that would be fine as JSON, declared as something else."""
    return [
        ("declared as a form", body, FORM),
        ("declared as multipart", body, "multipart/form-data; boundary=xyz"),
        ("declared as XML", body, "application/xml"),
    ]


def json_cases(limit: int, valid: bytes, typed: Iterable[tuple[str, Any]]) -> list[Case]:
    wrongly_typed = [(f"wrongly typed: {label}", json.dumps(value).encode(), JSON) for label, value in typed]
    return unreadable(limit) + mislabelled(valid) + wrongly_typed


# ---------------------------------------------------------------- the bridge and its store


def snapshot(bridge: Bridge) -> dict[str, list[tuple[Any, ...]]]:
    """What the store holds, read from its file; a meeting's poll cursor and relay identity are the reader's."""
    db = sqlite3.connect(f"file:{bridge.settings.store_file}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        held: dict[str, list[tuple[Any, ...]]] = {}
        for table in tables:
            if table.startswith("sqlite_") or table in ("schema_version", "migrations"):
                continue
            if table == "meetings":
                query = "SELECT id, code, name, allow, paused, identity_mode, display_name_template FROM meetings"
            else:
                query = f"SELECT * FROM {table}"
            held[table] = sorted(db.execute(query).fetchall(), key=repr)
        return held
    finally:
        db.close()


@dataclass
class Answer:
    label: str
    status: int
    content_type: str
    text: str


class Doors:
    """One bridge on the sandbox with every JSON door open: a webhook client, ACS SMS and chat events, the admin
    API and the console."""

    def __init__(self, bridge: Bridge, secret: str) -> None:
        self.bridge = bridge
        self.secret = secret

    async def post(
        self, label: str, path: str, case: Case, headers: dict[str, str] | None = None, method: str = "POST"
    ) -> Answer:
        assert self.bridge.http is not None
        _, body, content_type = case
        sent = dict(headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        async with self.bridge.http.request(method, f"{self.bridge.base}{path}", data=body, headers=sent) as resp:
            return Answer(label, resp.status, resp.content_type, await resp.text())


def webhook_headers(secret: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers over the raw bytes, so that even a body that is not UTF-8 carries a signature
    made with the client's secret."""
    msg_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def refused(answer: Answer, *statuses: int) -> str | None:
    """Why the answer is not a refusal with a JSON reason (one of `statuses` when given), or None when it is.
    A JSON door refuses a body declared as something else with 415, whatever it holds."""
    if not statuses and "declared as" in answer.label:
        statuses = (415,)
    if not 400 <= answer.status < 500 or (statuses and answer.status not in statuses):
        return f"{answer.label}: answered {answer.status}: {answer.text[:200]}"
    if answer.content_type != "application/json":
        return f"{answer.label}: {answer.status} answered as {answer.content_type}: {answer.text[:200]}"
    try:
        body = json.loads(answer.text)
    except ValueError:
        return f"{answer.label}: {answer.status} with a body that is not JSON: {answer.text[:200]}"
    if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("reason")):
        return f"{answer.label}: {answer.status} without error and reason: {answer.text[:200]}"
    return None


def settings_with_doors(info: SandboxInfo, tmp_path: Path, link: str, secret: str) -> Settings:
    # A generous rate, so that a 429 never stands in for the answer to the body.
    client = client_for(None, secret).model_copy(update={"rate_per_second": 10_000.0})
    meeting = MeetingConfig(link=link, code=CODE, name="Bad bodies")
    settings = bridge_settings(
        info,
        tmp_path / "bridge",
        clients={"app": client},
        meetings=[meeting],
        relay={"poll_active_s": 30.0, "poll_idle_s": 30.0},
        sms={"events_secret": SecretStr(SMS_SECRET)},
    )
    events = settings.events.model_copy(update={"secret": SecretStr(CHAT_SECRET)})
    return settings.model_copy(update={"events": events, "admin": AdminSection(token=SecretStr(TOKEN))})


@pytest.fixture
async def doors(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Doors]:
    meeting = await control.meeting(subject="Bad bodies")
    secret = new_secret()
    bridge = await Bridge(settings_with_doors(info, tmp_path, meeting["joinWebUrl"], secret)).start()
    try:
        yield Doors(bridge, secret)
    finally:
        await bridge.stop()


async def run_cases(
    doors: Doors, path: str, cases: list[Case], sign: Any = None, statuses: tuple[int, ...] = (), **headers: str
) -> list[str]:
    problems = []
    for case in cases:
        body = case[1]
        extra = dict(headers)
        if sign is not None:
            extra |= sign(body if isinstance(body, bytes) else b"")
        answer = await doors.post(case[0], path, case, extra)
        if (problem := refused(answer, *statuses)) is not None:
            problems.append(problem)
    return problems


# ---------------------------------------------------------------- the doors


def _event(**fields: Any) -> dict[str, Any]:
    return {"type": "message", "user": {"id": "ann", "displayName": "Ann"}, "meeting": CODE, "text": "hi"} | fields


WEBHOOK_TYPED: list[tuple[str, Any]] = [
    ("an array of events", [_event()]),
    ("type a number", _event(type=1)),
    ("type unknown", _event(type="shout")),
    ("type null", _event(type=None)),
    ("user a string", _event(user="ann")),
    ("user id a number", _event(user={"id": 7})),
    ("user id empty", _event(user={"id": ""})),
    ("user id with a slash", _event(user={"id": "../ann"})),
    ("user id too long", _event(user={"id": "a" * 129})),
    ("display name an object", _event(user={"id": "ann", "displayName": {}})),
    ("display name too long", _event(user={"id": "ann", "displayName": "A" * 257})),
    ("meeting a number", _event(meeting=int(CODE))),
    ("meeting a list", _event(meeting=[CODE])),
    ("meeting empty", _event(meeting="")),
    ("text a number", _event(text=5)),
    ("text a list", _event(text=["hi"])),
    ("text an object", _event(text={"en": "hi"})),
    ("text empty", _event(text="")),
    ("text blank", _event(text=" \n\t")),
    ("text missing", {k: v for k, v in _event().items() if k != "text"}),
    ("text over the client's limit", _event(text="é" * 3000)),
    ("text a huge number", _event(text=10**400)),
    ("an extra field", _event(extra=True)),
    ("a join without a meeting", {"type": "join", "user": {"id": "ann"}}),
    ("a user without an id", _event(user={"displayName": "Ann"})),
    ("no user", {"type": "message", "meeting": CODE, "text": "hi"}),
]


def _report(**fields: Any) -> dict[str, Any]:
    return {"type": "call", "user": {"id": "ann"}, "meeting": CODE, "state": "connected", "callId": "c-1"} | fields


# Refused for the body itself, 400, before anything looks for a session or a connector that takes reports (which
# would refuse a well-formed report here with 409: this bridge holds its calls itself).
CALL_TYPED: list[tuple[str, Any]] = [
    ("a call without a state", {k: v for k, v in _report().items() if k != "state"}),
    ("a call state null", _report(state=None)),
    ("a call state unknown", _report(state="dropped")),
    ("a call state of the SDK's spelling", _report(state="Connected")),
    ("a call state a number", _report(state=3)),
    ("a call state a list", _report(state=["connected"])),
    ("a call without a meeting", {k: v for k, v in _report().items() if k != "meeting"}),
    ("a callId a number", _report(callId=7)),
    ("a callId empty", _report(callId="")),
    ("a callId too long", _report(callId="c" * 129)),
    ("a callId with a slash", _report(callId="../c-1")),
    ("a callId with a space", _report(callId="c 1")),
    ("a call with text", _report(text="hi")),
    ("a message with a state", _event(state="connected")),
    ("a join with a callId", {"type": "join", "user": {"id": "ann"}, "meeting": CODE, "callId": "c-1"}),
    ("a call_id spelled in snake case", {k: v for k, v in _report().items() if k != "callId"} | {"call_id": "c-1"}),
]


async def test_webhook_door(doors: Doors) -> None:
    before = snapshot(doors.bridge)
    valid = json.dumps(_event()).encode()
    cases = json_cases(webhook.MAX_BODY_BYTES, valid, WEBHOOK_TYPED)
    problems = await run_cases(doors, "/channels/webhook/app", cases, lambda body: webhook_headers(doors.secret, body))
    reports: list[Case] = [(f"wrongly typed: {label}", json.dumps(v).encode(), JSON) for label, v in CALL_TYPED]
    problems += await run_cases(
        doors, "/channels/webhook/app", reports, lambda body: webhook_headers(doors.secret, body), statuses=(400,)
    )
    assert not problems, "\n".join(problems)
    assert snapshot(doors.bridge) == before


def _sms_event(**data: Any) -> dict[str, Any]:
    fields = {"messageId": f"Incoming_{uuid.uuid4().hex}", "from": PHONE, "to": "+18005550100", "message": "hi"}
    return {"id": f"e-{uuid.uuid4().hex}", "eventType": SMS_RECEIVED, "data": fields | data}


SMS_TYPED: list[tuple[str, Any]] = [
    ("an array of numbers", [1, 2, 3]),
    ("an array of arrays", [[_sms_event()]]),
    ("an event without a type", [{"id": "e-1", "data": {}}]),
    ("the type a number", [{"id": "e-1", "eventType": 5, "data": {}}]),
    ("the id a number", [_sms_event() | {"id": 5}]),
    ("the id missing", [{k: v for k, v in _sms_event().items() if k != "id"}]),
    ("data a string", [_sms_event() | {"data": "hi"}]),
    ("data null", [_sms_event() | {"data": None}]),
    ("data a list", [_sms_event() | {"data": ["hi"]}]),
    ("message a number", [_sms_event(message=5)]),
    ("message null", [_sms_event(message=None)]),
    ("from an object", [_sms_event(**{"from": {"number": PHONE}})]),
    ("messageId a list", [_sms_event(messageId=["x"])]),
    ("a report without a status", [{"id": "e-2", "eventType": SMS_DELIVERY_REPORT, "data": {"messageId": "m"}}]),
    ("a report's status a bool", [{"id": "e-2", "eventType": SMS_DELIVERY_REPORT, "data": {"deliveryStatus": True}}]),
    ("a handshake's code a number", [{"id": "v", "eventType": VALIDATION_EVENT, "data": {"validationCode": 7}}]),
    ("one CloudEvent with data a number", _sms_event() | {"data": 1}),
]


async def test_acs_sms_events_door(doors: Doors) -> None:
    before = snapshot(doors.bridge)
    valid = json.dumps([_sms_event()]).encode()
    cases = json_cases(eventgrid.MAX_BODY_BYTES, valid, SMS_TYPED)
    # Escapes that decode to lone surrogates, in the fields that are stored.
    for name in ("message", "from", "messageId"):
        raw = json.dumps([_sms_event(**{name: "PLACEHOLDER"})]).encode().replace(b"PLACEHOLDER", b"\\udc80")
        cases.append((f"a lone surrogate in data.{name}", raw, JSON))
    problems = await run_cases(doors, f"{SMS_EVENTS_PATH}?code={SMS_SECRET}", cases)
    assert not problems, "\n".join(problems)
    assert snapshot(doors.bridge) == before


def _chat_event(**data: Any) -> dict[str, Any]:
    fields = {"threadId": "19:meeting_x@thread.v2", "messageId": "1"} | data
    return {"id": f"c-{uuid.uuid4().hex}", "eventType": CHAT_EVENTS[0], "data": fields}


CHAT_TYPED: list[tuple[str, Any]] = [
    ("an array of numbers", [1, 2]),
    ("an array of strings", ["event"]),
    ("an event without a type", [{"id": "c", "data": {"threadId": "19:x@thread.v2"}}]),
    ("threadId a number", [_chat_event(threadId=5)]),
    ("threadId empty", [_chat_event(threadId="")]),
    ("threadId a list", [_chat_event(threadId=["19:x@thread.v2"])]),
    ("data a string", [_chat_event() | {"data": "x"}]),
    ("no data", [{k: v for k, v in _chat_event().items() if k != "data"}]),
    ("a handshake's code a number", [{"id": "v", "eventType": VALIDATION_EVENT, "data": {"validationCode": 7}}]),
    ("a handshake without data", [{"id": "v", "eventType": VALIDATION_EVENT}]),
]


async def test_acs_chat_events_door(doors: Doors) -> None:
    before = snapshot(doors.bridge)
    valid = json.dumps([_chat_event()]).encode()
    cases = json_cases(eventgrid.MAX_BODY_BYTES, valid, CHAT_TYPED)
    raw = json.dumps([_chat_event(threadId="PLACEHOLDER")]).encode().replace(b"PLACEHOLDER", b"19:\\ud800@thread.v2")
    cases.append(("a lone surrogate in the thread id", raw, JSON))
    problems = await run_cases(doors, f"{EVENTS_PATH}?code={CHAT_SECRET}", cases)
    assert not problems, "\n".join(problems)
    assert snapshot(doors.bridge) == before


_MEETING_TYPED: list[tuple[str, Any]] = [
    ("an array", [{"paused": True}]),
    ("paused a string", {"paused": "yes"}),
    ("paused a number", {"paused": 1}),
    ("allow a string", {"allow": "*"}),
    ("allow of numbers", {"allow": [1, 2]}),
    ("allow of lists", {"allow": [["*"]]}),
    ("a huge allow list", {"allow": ["*"] * 5000}),
    ("identityMode a number", {"identityMode": 1}),
    ("name a number", {"name": 5}),
    ("name an object", {"name": {"first": "x"}}),
    ("smsSegmentCap a float", {"smsSegmentCap": 2.5}),
    ("smsSegmentCap a huge number", {"smsSegmentCap": 10**400}),
    ("smsSegmentCap a string", {"smsSegmentCap": "3"}),
    ("displayNameTemplate a list", {"displayNameTemplate": ["{name}"]}),
    ("link a number", {"link": 5}),
    ("code a number", {"code": 123456}),
    ("an unknown field", {"colour": "red"}),
]


async def test_admin_api_bodies(doors: Doors) -> None:
    before = snapshot(doors.bridge)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    problems: list[str] = []
    for method, path, valid in (
        ("POST", "/api/v1/meetings", {"link": "https://teams.microsoft.com/meet/1234567890?p=abc", "code": "4321"}),
        ("PATCH", f"/api/v1/meetings/{CODE}", {"paused": True}),
    ):
        cases = json_cases(ADMIN_LIMIT, json.dumps(valid).encode(), _MEETING_TYPED)
        for case in cases:
            answer = await doors.post(f"{method} {case[0]}", path, case, auth, method=method)
            if (problem := refused(answer)) is not None:
                problems.append(problem)
    assert not problems, "\n".join(problems)
    assert snapshot(doors.bridge) == before


async def _sign_in(doors: Doors) -> tuple[str, str]:
    """The console's session cookie and CSRF token, after signing in with the operator token."""
    assert doors.bridge.http is not None
    base = doors.bridge.base
    async with doors.bridge.http.post(
        f"{base}/console/login", data={"token": TOKEN}, allow_redirects=False, headers={"Origin": base}
    ) as resp:
        assert resp.status == 303, await resp.text()
        cookie = resp.cookies[COOKIE].value
    async with doors.bridge.http.get(f"{base}/console", headers={"Cookie": f"{COOKIE}={cookie}"}) as resp:
        page = await resp.text()
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found is not None, page[:300]
    return cookie, found.group(1)


def form_cases() -> list[Case]:
    """Form bodies a browser would never send: aiohttp has to parse them before the console sees a field."""
    return [
        ("a form that is not UTF-8", b"token=\xff\xfe", FORM),
        ("a form in an unknown charset", b"token=x", f"{FORM}; charset=klingon"),
        ("a form in a charset that cannot decode it", "token=ü".encode(), f"{FORM}; charset=ascii"),
        ("multipart without a boundary", b"--x\r\n", "multipart/form-data"),
        ("multipart that is not multipart", b"hello", "multipart/form-data; boundary=xyz"),
        (
            "multipart with a nameless part",
            b"--xyz\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--xyz--\r\n",
            "multipart/form-data; boundary=xyz",
        ),
        (
            "multipart with a part that is not UTF-8",
            b'--xyz\r\nContent-Disposition: form-data; name="token"\r\n\r\n\xff\xfe\r\n--xyz--\r\n',
            "multipart/form-data; boundary=xyz",
        ),
        ("a form too large", b"token=" + b"a" * ADMIN_LIMIT, FORM),
        ("a form too large, chunked", _chunks(ADMIN_LIMIT + 64 * 1024), FORM),
    ]


async def test_console_posts(doors: Doors) -> None:
    before = snapshot(doors.bridge)
    base = doors.bridge.base
    problems: list[str] = []
    for case in form_cases():
        answer = await doors.post(f"login: {case[0]}", "/console/login", case, {"Origin": base})
        if (problem := refused(answer)) is not None:
            problems.append(problem)
    cookie, csrf = await _sign_in(doors)
    signed_in = {"Origin": base, "Cookie": f"{COOKIE}={cookie}", CSRF_HEADER: csrf}
    for case in form_cases():
        answer = await doors.post(f"logout: {case[0]}", "/console/logout", case, signed_in)
        # Signing out needs no field of the body (the CSRF token came as a header), so it may go through.
        if answer.status != 303 and (problem := refused(answer)) is not None:
            problems.append(problem)
    assert not problems, "\n".join(problems)
    assert snapshot(doors.bridge) == before


# ---------------------------------------------------------------- Twilio


@pytest.fixture
async def twilio(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[tuple[Bridge, str]]:
    meeting = await control.meeting(subject="Bad forms")
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Bad forms")
    settings = bridge_settings(info, tmp_path / "bridge", clients={}, meetings=[config], sms={"gateway": "twilio"})
    settings = await twilio_on_sandbox(settings, info)
    assert settings.twilio.auth_token is not None
    bridge = await Bridge(settings).start()
    try:
        yield bridge, settings.twilio.auth_token.get_secret_value()
    finally:
        await bridge.stop()


def _twilio_cases(url: str, token: str, fields: dict[str, str]) -> list[tuple[str, bytes | Any, dict[str, str]]]:
    def signed(params: list[tuple[str, str]], content_type: str = FORM) -> dict[str, str]:
        return {"X-Twilio-Signature": twilio_signature(token, url, params), "Content-Type": content_type}

    form = list(fields.items())
    body = urlencode(form).encode()
    cases: list[tuple[str, bytes | Any, dict[str, str]]] = [
        ("empty", b"", signed([])),
        ("not UTF-8", b"Body=\xff\xfe&From=" + quote(PHONE).encode(), signed(form)),
        ("a field without =", b"MessageSid", signed([("MessageSid", "")])),
        ("only separators", b"&&&", signed([])),
        ("JSON", json.dumps(fields).encode(), signed(form, JSON)),
        ("the form declared as JSON", body, signed(form, JSON)),
        ("the form declared as text", body, signed(form, "text/plain")),
        ("the form declared as multipart", body, signed(form, "multipart/form-data; boundary=x")),
        ("oversized", body + b"&Pad=" + b"a" * sms_twilio.MAX_BODY_BYTES, signed(form)),
        ("oversized, chunked", _chunks(sms_twilio.MAX_BODY_BYTES + 64 * 1024), signed(form)),
    ]
    for missing in fields:
        rest = [(k, v) for k, v in form if k != missing]
        cases.append((f"no {missing}", urlencode(rest).encode(), signed(rest)))
    return cases


async def test_twilio_inbound_and_status(twilio: tuple[Bridge, str]) -> None:
    bridge, token = twilio
    assert bridge.http is not None
    before = snapshot(bridge)
    inbound = {"MessageSid": "SM" + "b" * 32, "From": PHONE, "To": bridge.settings.sms.number or "", "Body": "hi"}
    status = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "delivered"}
    problems: list[str] = []
    for path, fields in ((INBOUND_PATH, inbound), (STATUS_PATH, status)):
        url = f"{bridge.base}{path}"
        for label, body, headers in _twilio_cases(url, token, fields):
            async with bridge.http.post(url, data=body, headers=headers) as resp:
                answer = Answer(f"{path}: {label}", resp.status, resp.content_type, await resp.text())
            # Twilio's door reads forms only, and says so with a 400.
            if (problem := refused(answer, 400, 403, 413)) is not None:
                problems.append(problem)
    assert not problems, "\n".join(problems)
    assert snapshot(bridge) == before


# ---------------------------------------------------------------- a good body, slowly


async def _in_pieces(body: bytes, pieces: int = 4) -> AsyncIterator[bytes]:
    """The body in several writes with pauses between, as a slow network delivers it."""
    size = -(-len(body) // pieces)
    for start in range(0, len(body), size):
        yield body[start : start + size]
        await asyncio.sleep(0.05)


async def test_a_body_that_arrives_in_pieces_is_read_whole(doors: Doors) -> None:
    """A door that parsed whatever had arrived so far would refuse these (bad signature, not JSON)."""
    assert doors.bridge.http is not None
    join = json.dumps(_event(type="join", text=None, user={"id": "ann", "displayName": "A" * 200})).encode()
    chat = json.dumps([_chat_event() for _ in range(40)]).encode()
    sms = json.dumps([_sms_event(message="x" * 300) for _ in range(20)]).encode()
    for path, body, headers, expected in [
        ("/channels/webhook/app", join, webhook_headers(doors.secret, join), 202),
        (f"{EVENTS_PATH}?code={CHAT_SECRET}", chat, {}, 200),
        (f"{SMS_EVENTS_PATH}?code={SMS_SECRET}", sms, {}, 200),
    ]:
        answer = await doors.post(path, path, (path, _in_pieces(body), JSON), headers)
        assert answer.status == expected, answer


async def test_a_twilio_form_that_arrives_in_pieces_is_read_whole(twilio: tuple[Bridge, str]) -> None:
    bridge, token = twilio
    assert bridge.http is not None
    url = f"{bridge.base}{INBOUND_PATH}"
    fields = {"MessageSid": "SM" + "d" * 32, "From": PHONE, "To": bridge.settings.sms.number or "", "Body": "é" * 500}
    headers = {"X-Twilio-Signature": twilio_signature(token, url, fields), "Content-Type": FORM}
    async with bridge.http.post(url, data=_in_pieces(urlencode(fields).encode()), headers=headers) as resp:
        assert resp.status == 200, await resp.text()


# ---------------------------------------------------------------- headers that are not UTF-8


async def raw_request(base: str, request: bytes) -> tuple[int, str, bytes]:
    """Bytes on the socket, for header values no HTTP client library would send: (status, content type, body)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    content_type = next(
        (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:")), ""
    )
    return int(lines[0].split()[1]), content_type.split(";")[0], body


def http_request(method: str, path: str, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers]
    lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def test_header_bytes_that_are_not_utf8_are_refused_not_crashed(doors: Doors) -> None:
    """aiohttp hands such bytes over as lone surrogates, which a plain encode() turns into a 500."""
    cookie, csrf = await _sign_in(doors)
    bad = b"\xff\xfe\x80"
    event = json.dumps(_event()).encode()
    signed = webhook_headers(doors.secret, event)
    json_type = b"Content-Type: application/json"
    cases = [
        ("admin bearer", http_request("GET", "/api/v1/status", [b"Authorization: Bearer " + bad]), 401),
        ("admin cookie", http_request("GET", "/api/v1/status", [b"Cookie: console_session=" + bad]), 401),
        (
            "admin CSRF header",
            http_request(
                "PATCH",
                f"/api/v1/meetings/{CODE}",
                [f"Cookie: {COOKIE}={cookie}".encode(), b"X-CSRF-Token: " + bad, json_type],
                b'{"paused": true}',
            ),
            403,
        ),
        ("console session", http_request("GET", "/console/session", [b"Cookie: console_session=" + bad]), 401),
        (
            "console sign-out CSRF",
            http_request(
                "POST",
                "/console/logout",
                [f"Cookie: {COOKIE}={cookie}".encode(), b"X-CSRF-Token: " + bad, f"Content-Type: {FORM}".encode()],
                f"csrf={csrf}x".encode(),
            ),
            403,
        ),
        (
            "webhook id",
            http_request(
                "POST",
                "/channels/webhook/app",
                [
                    b"webhook-id: " + bad,
                    *(f"{k}: {v}".encode() for k, v in signed.items() if k != "webhook-id"),
                    json_type,
                ],
                event,
            ),
            401,
        ),
        (
            "webhook signature",
            http_request(
                "POST",
                "/channels/webhook/app",
                [
                    b"webhook-signature: v1," + bad,
                    *(f"{k}: {v}".encode() for k, v in signed.items() if "sig" not in k),
                    json_type,
                ],
                event,
            ),
            401,
        ),
    ]
    problems = []
    for label, request, expected in cases:
        status, content_type, body = await raw_request(doors.bridge.base, request)
        answer = Answer(label, status, content_type, body.decode("utf-8", "replace"))
        if label == "console session":  # the pages' own question, answered {"signedIn": false}
            if status != expected:
                problems.append(f"{label}: answered {status}: {answer.text[:200]}")
        elif (problem := refused(answer, expected)) is not None:
            problems.append(problem)
    assert not problems, "\n".join(problems)


async def test_twilio_header_bytes_that_are_not_utf8_are_refused_not_crashed(twilio: tuple[Bridge, str]) -> None:
    bridge, token = twilio
    fields = {"MessageSid": "SM" + "e" * 32, "From": PHONE, "To": bridge.settings.sms.number or "", "Body": "hi"}
    body = urlencode(fields).encode()
    good = twilio_signature(token, f"{bridge.base}{INBOUND_PATH}", fields).encode()
    form = f"Content-Type: {FORM}".encode()
    problems = []
    for label, headers in (
        ("signature", [b"X-Twilio-Signature: \xff\xfe", form]),
        ("host", [b"X-Twilio-Signature: " + good, form, b"X-Forwarded-Host: \xff"]),
    ):
        request = http_request("POST", INBOUND_PATH, headers, body)
        if label == "host":
            request = request.replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1\xff", 1)
        status, content_type, answer = await raw_request(bridge.base, request)
        if (
            problem := refused(Answer(label, status, content_type, answer.decode("utf-8", "replace")), 403)
        ) is not None:
            problems.append(problem)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- random bodies, signed


_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_fields = st.sampled_from(["type", "user", "meeting", "text", "id", "eventType", "data", "threadId", "message"])
_shaped = st.dictionaries(
    _fields | st.text(max_size=6), _values | st.sampled_from(["message", "join", CODE]), max_size=5
)
_bodies = st.one_of(
    _values.map(lambda v: json.dumps(v).encode()),
    _shaped.map(lambda v: json.dumps(v).encode()),
    st.lists(_shaped, max_size=3).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
)


@settings(PROFILE, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_bodies)
async def test_random_bodies_at_the_json_doors_never_cause_a_server_error(doors: Doors, body: bytes) -> None:
    for path, headers in (
        ("/channels/webhook/app", webhook_headers(doors.secret, body)),
        (f"{SMS_EVENTS_PATH}?code={SMS_SECRET}", {}),
        (f"{EVENTS_PATH}?code={CHAT_SECRET}", {}),
    ):
        answer = await doors.post(path, path, (path, body, JSON), headers)
        assert answer.status < 500, answer
        if answer.status >= 400:
            assert refused(answer) is None, answer
