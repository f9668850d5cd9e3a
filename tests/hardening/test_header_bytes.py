"""Header bytes that are not UTF-8 at every route of the running bridge, the demo's inbox included: a 4xx, never a 500.

aiohttp hands such bytes to handlers as lone surrogates (surrogateescape); a handler that encodes them plainly
raises, and the request ends in a 500 with a traceback in the log (finding 7 of the security probe).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.config import Settings
from bot.demo import DemoInbox
from bot.sandbox import SandboxInfo
from tests.hardening.operator_bridge import Probe, operator_bridge
from tests.support.bridge import client_for, new_secret
from tests.support.sandbox import Control

NOT_UTF8 = b"\xff\xfe\xc3"
DEMO_SECRET = new_secret()


def demo_inbox() -> list[web.RouteDef]:
    """The embedded demo's inbox, as `run` adds it beside the bridge's routes."""
    return DemoInbox(client_for(None, DEMO_SECRET)).routes()


def with_chat_events(settings: Settings) -> Settings:
    events = settings.events.model_copy(update={"secret": SecretStr("chat-events-secret-hardening")})
    return settings.model_copy(update={"events": events})


def request(method: str, path: str, header: bytes) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 2\r\n"
        "Content-Type: application/json\r\n".encode()
        + header
        + b"\r\n\r\n{}"
    )


HEADERS = [
    pytest.param(b"Authorization: Bearer " + NOT_UTF8, id="authorization"),
    pytest.param(b"Authorization: " + NOT_UTF8, id="authorization-no-scheme"),
    pytest.param(b"Cookie: console_session=" + NOT_UTF8, id="cookie"),
    pytest.param(b"X-CSRF-Token: " + NOT_UTF8, id="csrf-token"),
    pytest.param(
        b"webhook-id: " + NOT_UTF8 + b"\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1," + NOT_UTF8, id="webhook"
    ),
    pytest.param(b"X-Twilio-Signature: " + NOT_UTF8, id="twilio"),
    pytest.param(b"Origin: " + NOT_UTF8, id="origin"),
]


def routes(probe: Probe) -> list[tuple[str, str]]:
    """(method, a concrete path) of every route the running app serves."""
    served = set()
    for route in probe.bridge.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter") or info.get("prefix", ""))
        path = path.replace("{id}", "x").replace("{client}", "app").replace("{filename}", "x")
        path = "/".join("x" if part.startswith("{") else part for part in path.split("/"))
        method = "GET" if route.method in ("*", "HEAD") else route.method
        served.add((method, path or "/"))
    return sorted(served)


async def test_the_demo_inbox_refuses_a_token_that_is_not_utf8(
    control: Control, info: SandboxInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with operator_bridge(control, info, tmp_path, extra_routes=demo_inbox()) as probe:
        status, answer = await probe.raw(request("GET", "/demo/callbacks", b"Authorization: Bearer " + NOT_UTF8))
        assert status == 401, answer
        assert b'"unauthorized"' in answer
        # The demo secret itself still reads it, and an unsigned callback is refused.
        async with probe.http.get(
            probe.base + "/demo/callbacks", headers={"Authorization": f"Bearer {DEMO_SECRET}"}
        ) as resp:
            assert resp.status == 200 and await resp.json() == []
        status, _ = await probe.raw(request("POST", "/demo/callbacks", b"webhook-id: " + NOT_UTF8))
        assert status == 401
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("header", HEADERS)
async def test_every_route_answers_header_bytes_that_are_not_utf8_with_a_4xx(
    control: Control, info: SandboxInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    async with operator_bridge(control, info, tmp_path, adjust=with_chat_events, extra_routes=demo_inbox()) as probe:
        served = routes(probe)
        assert ("GET", "/demo/callbacks") in served and ("POST", "/channels/webhook/app") in served
        assert ("POST", "/channels/acs/events") in served and ("POST", "/console/login") in served
        answers = {}
        for method, path in served:
            status, answer = await probe.raw(request(method, path, header))
            answers[(method, path)] = status
            assert 200 <= status < 500, (method, path, answer[:300])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert answers[("GET", "/demo/callbacks")] == 401
