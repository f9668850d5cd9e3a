"""The whole bridge signed in to ACS with Entra ID (DefaultAzureCredential through the host's managed identity) and no
access key anywhere: users join, talk, and the readiness check sees the resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import MeetingConfig, Settings
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import bridge_for, wait_for
from tests.support.sandbox import Control


def on_entra(settings: Settings) -> Settings:
    acs = settings.acs.model_copy(
        update={"connection_string": None, "given_endpoint": settings.acs.endpoint, "credential": "default"}
    )
    return settings.model_copy(update={"acs": acs})


@pytest.fixture
def managed_identity(monkeypatch: pytest.MonkeyPatch, info: SandboxInfo) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", info.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", info.identity_header)


async def test_a_bridge_without_the_access_key_relays_both_ways(
    managed_identity: None, control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code="515151", name="Weekly sync")
    async with bridge_for(info, tmp_path, config, adjust=on_entra) as (bridge, _receiver, secret):
        assert bridge.settings.acs.connection_string is None
        user: dict[str, Any] = {"id": "ann", "displayName": "Ann"}
        status, _ = await bridge.send("app", secret, {"type": "join", "user": user, "meeting": "515151"})
        assert status == 202

        async def in_call() -> bool:
            return any(s.state == SessionState.IN_CALL for s in await bridge.store.sessions())

        await wait_for(in_call, what="ann in the call")
        status, _ = await bridge.send(
            "app", secret, {"type": "message", "user": user, "meeting": "515151", "text": "hi"}
        )
        assert status == 202

        async def posted() -> list[Any]:
            thread = await control.ok("GET", f"/sandbox/v1/meetings/{meeting['id']}/messages")
            return [m for m in thread["value"] if m["type"] in ("text", "html") and m["content"]["message"] == "hi"]

        await wait_for(posted, what="ann's message in the thread")
        assert bridge.http is not None
        async with bridge.http.get(f"{bridge.base}/readyz") as resp:
            ready = await resp.json()
        assert resp.status == 200 and ready["checks"]["acs"] is True
