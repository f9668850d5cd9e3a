"""Schemathesis against the admin API's own OpenAPI document: generated requests (valid and invalid), sent with the
operator token by an auth hook, never get a 5xx, and every answer conforms to the document.

Schemathesis' pytest integration is synchronous, so the sandbox and the bridge run in a thread of their own with
their own event loop, on loopback; the test sends real HTTP to them. SCHEMATHESIS_EXAMPLES sets the examples per
operation (default a few, to stay well under a minute)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from requests.structures import CaseInsensitiveDict

from bot.admin.openapi import document
from bot.config import AdminSection, MeetingConfig
from bot.sandbox import Sandbox
from tests.support.bridge import Bridge, bridge_settings, client_for, new_secret
from tests.support.sandbox import Control

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

TOKEN = "operator-token-for-schemathesis-0123"
CODE = "616161"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "15"))


class BridgeThread:
    """The sandbox and a bridge with the admin API on, served from a thread with its own event loop."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bridge-under-schemathesis", daemon=True)
        self.sandbox: Sandbox | None = None
        self.bridge: Bridge | None = None

    def run(self, coroutine: Any, timeout_s: float = 60.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=timeout_s)

    def start(self) -> str:
        self.thread.start()
        return str(self.run(self._start()))

    async def _start(self) -> str:
        self.sandbox = Sandbox()
        info = await self.sandbox.start()
        ctx = ssl.create_default_context(cafile=info.ca_file)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            meeting = await Control(http, info).meeting(subject="Under schemathesis")
        secret = new_secret()
        settings = bridge_settings(
            info,
            self.state_dir,
            clients={"app": client_for(None, secret)},
            meetings=[MeetingConfig(link=meeting["joinWebUrl"], code=CODE, name="Under schemathesis")],
        )
        settings = settings.model_copy(update={"admin": AdminSection(token=SecretStr(TOKEN))})
        self.bridge = await Bridge(settings).start()
        # Something to find: a user with a session and a delivery, so reads and changes meet real rows too.
        status, _ = await self.bridge.send("app", secret, {"type": "join", "user": {"id": "ann"}, "meeting": CODE})
        assert status == 202
        return self.bridge.base

    def stop(self) -> None:
        async def _stop() -> None:
            if self.bridge is not None:
                await self.bridge.stop()
            if self.sandbox is not None:
                await self.sandbox.stop()

        try:
            self.run(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def bridge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    running = BridgeThread(tmp_path_factory.mktemp("schemathesis") / "bridge")
    try:
        yield running.start()
    finally:
        running.stop()


# The document as the code builds it; test_served_document_is_this_one holds the served one to it. (Loading it from
# the running bridge would need schemathesis' lazy fixture loader, which does not run on pytest 9.)
schema = schemathesis.openapi.from_dict(
    document(),
    config=schemathesis.Config.from_dict(
        {
            "operations": [
                {
                    # A link's shape is more than a JSON Schema can say, and whether it names a meeting takes a
                    # lookup: a schema-valid new meeting may fairly be refused (400) or not found (422).
                    "include-operation-id": "addMeeting",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 400, 409, 422, 503]}},
                },
                {
                    # Whether digits make a phone number depends on its country's lengths (phonenumbers' data): a
                    # schema-valid number may fairly be refused (400).
                    "include-operation-id": "checkConsent",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 400]}},
                },
            ]
        }
    ),
)


@schema.auth()
class OperatorToken:
    """The operator's bearer token on every request (schemathesis also tries them without it: 401)."""

    def get(self, case: OpenApiCase, context: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: OpenApiCase, data: str, context: schemathesis.AuthContext) -> None:
        headers = CaseInsensitiveDict(case.headers or {})
        headers["Authorization"] = f"Bearer {data}"
        case.headers = headers


def test_served_document_is_this_one(bridge_url: str) -> None:
    with urllib.request.urlopen(f"{bridge_url}/api/v1/openapi.json", timeout=10) as resp:
        assert json.load(resp) == json.loads(json.dumps(document()))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_document(case: OpenApiCase, bridge_url: str) -> None:
    case.call_and_validate(base_url=f"{bridge_url}/api/v1", timeout=30)


def _call(bridge_url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"{bridge_url}/api/v1{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.parametrize(
    "path",
    [
        "/deliveries?until=",  # was taken as "no filter"
        "/deliveries?state=",
        "/deliveries?limit=1_0",  # int() reads it as 10
        "/deliveries?limit=%EF%BC%95",  # a full-width 5, which int() reads too
        "/deliveries?limit=" + "9" * 5000,  # int() refuses more than 4300 digits with ValueError
        "/sessions?state=",
        "/sessions?state=active,,left",
    ],
)
def test_what_schemathesis_found_in_the_filters(bridge_url: str, path: str) -> None:
    status, body = _call(bridge_url, "GET", path)
    assert status == 400 and body["error"] == "bad_request", body


def test_a_name_that_is_an_emoji_sequence_is_one_line_of_visible_text(bridge_url: str) -> None:
    """str.isprintable() refused the zero-width joiner inside the emoji; the document's pattern allowed it."""
    name = "\U0001f469\u200d\U0001f4bb Dev sync\u00a0(weekly)"
    status, body = _call(bridge_url, "PATCH", f"/meetings/{CODE}", {"name": name})
    assert status == 200 and body["name"] == name, body
    for refused in ("two\nlines", "bidi \u202e", "line\u2028separator"):
        status, body = _call(bridge_url, "PATCH", f"/meetings/{CODE}", {"name": refused})
        assert status == 400 and body["field"] == "name", body
