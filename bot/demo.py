"""The demo that `run` sets up on the embedded sandbox: a live meeting, a demo webhook client and its inbox."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from .admin.console_auth import wire_bytes
from .channels.webhook import verify
from .config import MeetingConfig, Settings, WebhookClient
from .refusal import refuse

log = logging.getLogger(__name__)
DEMO_FILE = "demo.json"
DEMO_CLIENT = "demo"
DEMO_CODE = "123456"


@dataclass(frozen=True)
class Demo:
    meeting: dict[str, Any]
    secret: str
    webhook_url: str
    admin_token: str | None = None
    """The operator token `run` generated, saved so the CLI finds it."""


def _load_secret(state_dir: Path) -> str:
    path = state_dir / DEMO_FILE
    if path.exists():
        return str(json.loads(path.read_text())["secret"])
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"secret": secret}, fh)
    return secret


def save_demo(state_dir: Path, demo: Demo) -> None:
    path = state_dir / DEMO_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    saved = {
        "secret": demo.secret,
        "webhookUrl": demo.webhook_url,
        "meetingCode": DEMO_CODE,
        "sandboxMeetingId": demo.meeting["id"],
    }
    if demo.admin_token is not None:
        saved["adminToken"] = demo.admin_token
    with os.fdopen(fd, "w") as fh:
        json.dump(saved, fh, indent=2)


def read_demo(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / DEMO_FILE
    return json.loads(path.read_text()) if path.exists() else None


async def create_demo_meeting(control_url: str, ca_file: str) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.post(
            f"{control_url}/meetings",
            json={"subject": "Bridge demo", "organizer": {"displayName": "Megan Bowen"}, "lobby": "auto"},
        ) as resp:
            resp.raise_for_status()
            meeting: dict[str, Any] = await resp.json()
        async with http.post(f"{control_url}/meetings/{meeting['id']}/start") as resp:
            resp.raise_for_status()
    return meeting


async def with_demo(
    settings: Settings, control_url: str, ca_file: str, base_url: str, admin_token: str | None = None
) -> tuple[Settings, Demo]:
    """Settings plus the demo meeting (code 123456) and the demo webhook client whose callbacks the bridge keeps."""
    meeting = await create_demo_meeting(control_url, ca_file)
    secret = _load_secret(settings.bridge.state_dir)
    client = WebhookClient(secrets=[SecretStr(secret)], callback_url=f"{base_url}/demo/callbacks")
    demo_meeting = MeetingConfig(link=meeting["joinWebUrl"], code=DEMO_CODE, name="Bridge demo")
    updated = settings.model_copy(
        update={
            "webhook_clients": {**settings.webhook_clients, DEMO_CLIENT: client},
            "meetings": [*settings.meetings, demo_meeting],
        }
    )
    demo = Demo(meeting, secret, f"{base_url}/channels/webhook/{DEMO_CLIENT}", admin_token)
    save_demo(settings.bridge.state_dir, demo)
    return updated, demo


class DemoInbox:
    """Callbacks for the demo client land here, verified like any receiver should, and can be read back."""

    PATH = "/demo/callbacks"
    KEEP = 200

    def __init__(self, client: WebhookClient) -> None:
        self._client = client
        self.items: list[dict[str, Any]] = []

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.PATH, self.receive), web.get(self.PATH, self.listing)]

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if verify(self._client, body, request.headers) is not None:
            return refuse(401, "bad_signature", "no signature of the demo client's matches")
        try:
            item = json.loads(body)
        except ValueError:  # signed with the demo's secret, yet not JSON
            return refuse(400, "bad_request", "the body is not JSON")
        self.items.append(item)
        del self.items[: -self.KEEP]
        return web.json_response({"ok": True})

    async def listing(self, request: web.Request) -> web.Response:
        # Reading the inbox needs the demo client's secret as a bearer token; compared as the bytes sent, since a
        # header byte that is not UTF-8 arrives as a lone surrogate that a plain encode() refuses.
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        expected = self._client.secrets[0].get_secret_value()
        if not hmac.compare_digest(wire_bytes(token), wire_bytes(expected)):
            return refuse(401, "unauthorized", "send the demo secret as a Bearer token")
        return web.json_response(self.items)
