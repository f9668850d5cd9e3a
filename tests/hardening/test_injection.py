"""Injection and leakage through the real bridge: what external users send reaches Teams as the text they sent.

Webhook and SMS users send markup, mentions, links, entities and Markdown, under hostile display names, into a
per_user meeting and a relay meeting. What the sandbox thread stored is read back two ways: parsed as a browser or
Teams parses it (the only elements allowed are the bridge's line breaks and links whose visible text is their own
address, taken verbatim from the text sent) and converted with the bridge's own Teams-HTML-to-text; both must give
back exactly the text sent. Then: a webhook body can never name where callbacks go, and neither can the admin API.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.admin.openapi import document
from bot.config import AdminSection, MeetingConfig
from bot.formatting import clean_text, html_to_text
from bot.models import IdentityMode, SessionState
from bot.relay.presence import SHARED_SPEAKER
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_settings, client_for, new_secret, wait_for
from tests.support.sandbox import Control
from tests.support.sms import sms_world
from tests.support.store import settled, stored

TOKEN = "operator-token-injection-1"
CODES = {IdentityMode.PER_USER: "616161", IdentityMode.SHARED: "626262"}
MODES = [pytest.param(IdentityMode.PER_USER, id="per_user"), pytest.param(IdentityMode.SHARED, id="shared")]
SHOWN_AS = re.compile(r"[ \t\n\r\f]+")
"""What HTML collapses into one space when it renders text (only ASCII whitespace; &nbsp; stays)."""


class Rendering(HTMLParser):
    """Stored Teams HTML as a browser (or Teams) reads it: the elements, the visible text, the links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.other: list[str] = []
        self.parts: list[str] = []
        self.links: list[tuple[str, str]] = []
        self._link: tuple[str, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "br":
            self.parts.append("\n")
        elif tag == "a":
            self._link = (dict(attrs).get("href") or "", len(self.parts))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            href, start = self._link
            self.links.append((href, "".join(self.parts[start:])))
            self._link = None

    def handle_data(self, data: str) -> None:
        self.parts.append(SHOWN_AS.sub(" ", data))

    def handle_comment(self, data: str) -> None:
        self.other.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.other.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.other.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.other.append(f"declaration {data!r}")

    @property
    def text(self) -> str:
        """The visible text: &nbsp; shows as a space, a line's trailing spaces show as nothing."""
        return "\n".join(line.rstrip(" ") for line in "".join(self.parts).replace("\xa0", " ").split("\n"))


def render(markup: str) -> Rendering:
    rendering = Rendering()
    rendering.feed(markup)
    rendering.close()
    return rendering


def assert_shows_exactly(message: dict[str, Any], expected: str) -> None:
    """The stored message renders as `expected` and holds no markup of its own beyond plain links."""
    content = message["content"]["message"]
    assert message["type"] == "html", message
    shown = render(content)
    assert shown.other == [], shown.other
    assert {tag for tag, _ in shown.elements} <= {"a", "br"}, shown.elements
    for tag, attrs in shown.elements:
        if tag == "a":
            assert list(attrs) == ["href"], attrs
    for href, visible in shown.links:
        # A link is the address as written, clickable: never other words over a hidden target.
        assert visible == href and urlsplit(href).scheme in ("http", "https"), (href, visible)
        assert href in expected, href
    assert shown.text == "\n".join(line.rstrip(" ") for line in expected.split("\n"))
    assert html_to_text(content) == clean_text(expected)


# the stage: one bridge, a per_user meeting and a relay meeting --------------------------------------------


@dataclass
class Stage:
    control: Control
    bridge: Bridge
    receiver: Receiver
    secret: str
    meetings: dict[IdentityMode, dict[str, Any]]
    evil: Trap

    async def send(self, event: dict[str, Any]) -> tuple[int, Any]:
        return await self.bridge.send("app", self.secret, event)

    async def join(self, user: str, name: str, mode: IdentityMode) -> None:
        event = {"type": "join", "user": {"id": user, "displayName": name}, "meeting": CODES[mode]}
        status, body = await self.send(event)
        assert status == 202, body

        async def in_call() -> bool:
            sessions = await self.bridge.store.sessions(states=[SessionState.IN_CALL])
            return any(s.user_id == f"webhook:app/{user}" for s in sessions)

        await wait_for(in_call, what=f"{user} in the {mode} meeting's call")

    async def say(self, user: str, mode: IdentityMode, text: str) -> dict[str, Any]:
        """Sends `text` as the user; the message the meeting's thread stored for it."""
        status, body = await self.send({"type": "message", "user": {"id": user}, "meeting": CODES[mode], "text": text})
        assert status == 202, body
        return await self.posted(mode)

    async def posted(self, mode: IdentityMode) -> dict[str, Any]:
        """The one chat message in the meeting's thread (Teams users say nothing here)."""
        path = f"/sandbox/v1/meetings/{self.meetings[mode]['id']}/messages"

        async def found() -> list[dict[str, Any]]:
            body = await self.control.ok("GET", path)
            return [m for m in body["value"] if m["type"] in ("text", "html")]

        [message] = await wait_for(found, what=f"a message in the {mode} meeting")
        return dict(message)


@dataclass
class Trap:
    """An HTTP server that records every request it gets: where a callback must never go."""

    requests: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"

    async def _record(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        return web.json_response({"ok": True})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@asynccontextmanager
async def open_stage(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Stage]:
    meetings = {mode: await control.meeting(subject=f"{mode} meeting") for mode in CODES}
    configs = [
        MeetingConfig(link=meetings[mode]["joinWebUrl"], code=code, name=f"{mode} meeting", identity_mode=mode)
        for mode, code in CODES.items()
    ]
    secret = new_secret()
    receiver, evil = Receiver(client_for(None, secret)), Trap()
    await receiver.start()
    await evil.start()
    receiver.client = client_for(receiver.url, secret)
    settings = bridge_settings(info, tmp_path / "bridge", clients={"app": receiver.client}, meetings=configs)
    settings = settings.model_copy(update={"admin": AdminSection(token=SecretStr(TOKEN))})
    bridge = await Bridge(settings).start()
    try:
        yield Stage(control, bridge, receiver, secret, meetings, evil)
    finally:
        await bridge.stop()
        await receiver.stop()
        await evil.stop()


@pytest.fixture
async def stage(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Stage]:
    async with open_stage(control, info, tmp_path) as world:
        yield world


# hostile text -------------------------------------------------------------------------------------------

HOSTILE_TEXTS = [
    pytest.param('<at id="0">Megan Bowen</at> can you look?', id="mention"),
    pytest.param("<at>everyone</at>", id="bare-mention"),
    pytest.param('<a href="https://evil.example">click here</a>', id="anchor"),
    pytest.param("<script>alert(1)</script>", id="script"),
    pytest.param('<img src=x onerror="alert(1)">', id="img-onerror"),
    pytest.param("\"><svg/onload=alert(1)> '><b x='", id="attribute-breakout"),
    pytest.param("&lt;b&gt;not bold&lt;/b&gt; &amp;amp; &#60;i&#62; &nbsp; &#x41;", id="escaped-entities"),
    pytest.param("**bold** __under__ _it_ `code` [docs](https://evil.example) # heading", id="markdown"),
    pytest.param("first line\nsecond line\n\n  indented  twice\n- item", id="newlines-and-spaces"),
    pytest.param("<p>para</p><br/><hr><b>b</b><i>i</i><u>u</u>", id="formatting-tags"),
    pytest.param("<!-- hidden --> <![CDATA[x]]> <?xml version='1.0'?> <!DOCTYPE html>", id="comments-declarations"),
    pytest.param("<style>*{display:none}</style><iframe src=https://evil.example></iframe>", id="style-and-iframe"),
    pytest.param('<emoji id="smile" alt="x"></emoji><attachment id="1" name="x.exe"></attachment>', id="teams-tags"),
    pytest.param('<codeblock class="Python"><code>x</code></codeblock><blockquote>q</blockquote>', id="code-quote"),
    pytest.param('see https://good.example/a?b=1&c=2 and "https://evil.example/"onclick=x', id="urls"),
    pytest.param("https://evil.example/<at id=0>x</at>(https://evil.example/'x')", id="url-against-markup"),
    pytest.param("javascript:alert(1) data:text/html,<b>x</b> mailto:a@evil.example", id="other-schemes"),
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
async def test_webhook_text_reaches_teams_as_sent_in_both_identity_modes(stage: Stage, text: str) -> None:
    for mode in CODES:
        await stage.join("ann", "Ann", mode)
    shown = {mode: await stage.say("ann", mode, text) for mode in CODES}
    assert shown[IdentityMode.PER_USER]["senderDisplayName"] == "Ann (app)"
    assert_shows_exactly(shown[IdentityMode.PER_USER], text)
    assert shown[IdentityMode.SHARED]["senderDisplayName"] == SHARED_SPEAKER
    assert_shows_exactly(shown[IdentityMode.SHARED], f"Ann: {text}")


HOSTILE_NAMES = [
    # (the name sent, the name Teams shows: one line, controls dropped, never markup)
    pytest.param("<b>Ann</b>", "<b>Ann</b>", id="markup"),
    pytest.param('<at id="0">Megan Bowen</at>', '<at id="0">Megan Bowen</at>', id="mention"),
    pytest.param('Ann "Nan" O\'Neil', 'Ann "Nan" O\'Neil', id="quotes"),
    pytest.param("Ann &amp; <i>Bob</i>", "Ann &amp; <i>Bob</i>", id="entity"),
    pytest.param("Ann\nMegan Bowen: fake line", "Ann Megan Bowen: fake line", id="newline"),
    pytest.param("\u202eAnn\u202c", "Ann", id="bidi-override"),
    pytest.param('https://evil.example/"x', 'https://evil.example/"x', id="url"),
]


@pytest.mark.parametrize(("name", "shown_as"), HOSTILE_NAMES)
async def test_hostile_display_names_stay_text(stage: Stage, name: str, shown_as: str) -> None:
    for mode in CODES:
        await stage.join("ann", name, mode)
    text = "hello <b>there</b>"
    per_user = await stage.say("ann", IdentityMode.PER_USER, text)
    # A display name is shown as text by Teams: as given (never escaped twice), one line.
    assert per_user["senderDisplayName"] == f"{shown_as} (app)"
    assert_shows_exactly(per_user, text)
    relay = await stage.say("ann", IdentityMode.SHARED, text)
    assert relay["senderDisplayName"] == SHARED_SPEAKER
    assert_shows_exactly(relay, f"{shown_as}: {text}")


SMS_TEXT = "\n".join(
    [
        '<at id="0">Megan Bowen</at> look',
        '<a href="https://evil.example">click</a> <script>alert(1)</script>',
        "&lt;b&gt;not bold&lt;/b&gt; **bold** <img src=x onerror=alert(1)>",
        "  indented, https://good.example/?a=1&b=2",
    ]
)
SMS_NAME = 'Ann "Nan" O\'Neil & Co'


@pytest.mark.parametrize("mode", MODES)
async def test_sms_text_and_name_reach_teams_as_sent(
    control: Control, info: SandboxInfo, tmp_path: Path, mode: IdentityMode
) -> None:
    async with sms_world(control, info, tmp_path, "acs", identity_mode=mode, sms={"burst_window_s": 0.0}) as w:
        await w.text(f"NAME {SMS_NAME}")
        await w.until_text(SMS_NAME)
        await w.joined()
        await w.text(SMS_TEXT)
        [message] = await wait_for(lambda: _chat_messages(control, w.meeting_path), what="the text in the thread")
        if mode == IdentityMode.PER_USER:
            assert message["senderDisplayName"] == f"{SMS_NAME} (SMS)"
            assert_shows_exactly(message, SMS_TEXT)
        else:
            assert message["senderDisplayName"] == SHARED_SPEAKER
            assert_shows_exactly(message, f"{SMS_NAME}: {SMS_TEXT}")


async def _chat_messages(control: Control, meeting_path: str) -> list[dict[str, Any]]:
    body = await control.ok("GET", f"{meeting_path}/messages")
    return [m for m in body["value"] if m["type"] in ("text", "html")]


# outbound targets come only from the operators' configuration ------------------------------------------

Extra = Callable[[str], dict[str, Any]]
CALLBACK_BODIES: list[tuple[str, Extra, str]] = [
    # (case, what the body adds given the trap's URL, the field the 400 names)
    ("callbackUrl", lambda url: {"callbackUrl": url}, "callbackUrl"),
    ("callback_url", lambda url: {"callback_url": url}, "callback_url"),
    ("url", lambda url: {"url": url}, "url"),
    ("replyTo", lambda url: {"replyTo": url}, "replyTo"),
    ("nested", lambda url: {"webhook": {"url": url}}, "webhook"),
    ("in-user", lambda url: {"user": {"id": "ann", "displayName": "Ann", "callbackUrl": url}}, "user"),
]
CALLBACK_FIELDS = [pytest.param(extra, named, id=case) for case, extra, named in CALLBACK_BODIES]


@pytest.mark.parametrize(("extra", "named"), CALLBACK_FIELDS)
@pytest.mark.parametrize("kind", ["join", "message"])
async def test_a_body_naming_a_callback_is_refused(stage: Stage, extra: Extra, named: str, kind: str) -> None:
    mode = IdentityMode.PER_USER
    if kind == "message":
        await stage.join("ann", "Ann", mode)
    before = await settled(stage.bridge)
    event = {"type": kind, "user": {"id": "ann", "displayName": "Ann"}, "meeting": CODES[mode], "text": "hi"}
    if kind == "join":
        del event["text"]
    status, body = await stage.send(event | extra(stage.evil.url))
    assert status == 400 and body["error"] == "bad_request" and body["reason"].startswith(named), body
    assert stored(stage.bridge.settings.store_file) == before


async def test_callbacks_go_only_to_the_configured_url(stage: Stage) -> None:
    mode = IdentityMode.PER_USER
    for _, extra, _ in CALLBACK_BODIES:
        event = {"type": "join", "user": {"id": "ann", "displayName": "Ann"}, "meeting": CODES[mode]}
        assert (await stage.send(event | extra(stage.evil.url)))[0] == 400
    await stage.join("ann", "Ann", mode)
    await stage.say("ann", mode, f"reply to {stage.evil.url} please")
    meeting = stage.meetings[mode]
    await stage.control.ok(
        "POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", {"from": meeting["organizerId"], "html": "<p>ok</p>"}
    )

    async def delivered() -> bool:
        return any(m["text"] == "ok" for m in stage.receiver.of("message", "ann"))

    await wait_for(delivered, what="the Teams message at the configured callback")
    await settled(stage.bridge)
    assert stage.evil.requests == []
    # Nothing the bridge keeps for its deliveries names a target: each is found in the configuration when sent.
    outbox = json.dumps(stored(stage.bridge.settings.store_file)["outbox"], default=str)
    assert stage.receiver.url not in outbox


def _schemas(node: Any, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object schema under node, $refs followed."""
    if isinstance(node, list):
        return [s for item in node for s in _schemas(item, doc)]
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        return _schemas(doc["components"]["schemas"][name], doc)
    found = [node] if node.get("type") == "object" or "properties" in node else []
    return found + [s for value in node.values() for s in _schemas(value, doc)]


async def test_the_admin_api_offers_no_way_to_set_a_target(stage: Stage) -> None:
    doc = document()
    targets = re.compile(r"url|callback|webhook|endpoint|target|href|hook", re.IGNORECASE)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            named = [p["name"] for p in operation.get("parameters", [])]
            assert not [n for n in named if targets.search(n)], (method, path, named)
            bodies = _schemas(operation.get("requestBody", {}), doc)
            for schema in bodies:
                assert schema.get("additionalProperties") is False, (method, path)
                assert not [n for n in schema.get("properties", {}) if targets.search(n)], (method, path)
    # And the server holds to the document: a target in a body is refused, nothing changes.
    assert stage.bridge.http is not None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = await settled(stage.bridge)
    another = await stage.control.meeting(subject="Another")
    for method, path, body in (
        ("PATCH", f"/meetings/{CODES[IdentityMode.PER_USER]}", {"callbackUrl": stage.evil.url}),
        ("PATCH", f"/meetings/{CODES[IdentityMode.PER_USER]}", {"name": "x", "webhook": {"url": stage.evil.url}}),
        ("POST", "/meetings", {"link": another["joinWebUrl"], "callbackUrl": stage.evil.url}),
    ):
        url = f"{stage.bridge.base}/api/v1{path}"
        async with stage.bridge.http.request(method, url, json=body, headers=headers) as resp:
            answer = await resp.json()
            assert resp.status == 400 and answer["error"] == "bad_request", (method, path, answer)
    assert stored(stage.bridge.settings.store_file) == before
    assert stage.evil.requests == []
