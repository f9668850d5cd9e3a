"""`python -m bot doctor` on the sandbox: every step passes on a sound set-up, and each fault made real there (a wrong
key, an unknown meeting, Graph's 403, no Chromium, chat refused, a lobby nobody opens) fails its step with the fix."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.config import MeetingConfig, Settings, load_settings
from bot.doctor import Doctor
from bot.doctor.report import Step, lines, ok
from bot.embedded import twilio_on_sandbox
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import bridge_for, bridge_settings, wait_for
from tests.support.browser_bridge import needs_chromium
from tests.support.sandbox import Control

PUBLIC_URL = "https://bridge.example.test"


def _sound(settings: Settings) -> Settings:
    """What a deployment adds: the public URL Event Grid reaches, and the chat events door's secret."""
    bridge = settings.bridge.model_copy(update={"public_url": PUBLIC_URL})
    events = settings.events.model_copy(update={"secret": SecretStr("chat-events-code-7f3k")})
    return settings.model_copy(update={"bridge": bridge, "events": events})


def organizer(meeting: dict[str, Any]) -> str:
    return str(meeting["organizerId"]).removeprefix("8:orgid:")


async def set_up(control: Control, info: SandboxInfo, tmp_path: Path, lobby: str = "auto") -> Settings:
    weekly = await control.meeting("Weekly sync", lobby=lobby)
    planning = await control.meeting("Planning", lobby=lobby)
    meetings = [
        MeetingConfig(link=weekly["joinWebUrl"], code="111111", name="Weekly sync"),
        MeetingConfig(link=planning["shortUrl"], organizer_id=organizer(planning), code="222222", name="Planning"),
    ]
    return _sound(bridge_settings(info, tmp_path, clients={}, meetings=meetings))


def by_name(steps: list[Step]) -> dict[str, Step]:
    return {s.name: s for s in steps}


def failures(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.status == "fail"]


async def test_a_sound_set_up_passes_every_step_in_order(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    steps = await Doctor(await set_up(control, info, tmp_path), join=True, join_timeout_s=10).run()
    assert failures(steps) == [], "\n".join(lines(steps))
    assert [s.name for s in steps] == [
        "configuration valid",
        "ACS endpoint reachable",
        "credential accepted",
        "meeting Weekly sync",
        "meeting Planning",
        "call connector",
        "meeting Weekly sync: a test guest joins and chats",
        "meeting Planning: a test guest joins and chats",
        "Event Grid doors",
        "SMS",
    ]
    found = by_name(steps)
    assert "found in Graph" in found["meeting Weekly sync"].detail
    assert "join meeting id" in found["meeting Planning"].detail
    assert f"{PUBLIC_URL}/channels/acs-sms/events?code=<sms.events_secret>" in found["Event Grid doors"].detail
    assert lines(steps)[-1] == "all checks passed" and ok(steps)
    organizer_view = await control.ok("GET", "/sandbox/v1/meetings")
    assert organizer_view["value"]  # the test guests left again:
    for meeting in organizer_view["value"]:
        assert not [p for p in meeting["roster"]["inCall"] if p.get("kind") == "acs"]


async def test_a_wrong_key_fails_the_credential_with_the_fix(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    settings = await set_up(control, info, tmp_path)
    wrong = info.connection_string.split("accesskey=")[0] + "accesskey=" + "A" * 86 + "=="
    acs = settings.acs.model_copy(update={"connection_string": SecretStr(wrong)})
    steps = await Doctor(settings.model_copy(update={"acs": acs})).run()
    step = by_name(steps)["credential accepted"]
    assert step.status == "fail" and "refused" in step.detail and "Keys page" in (step.fix or "")
    assert by_name(steps)["ACS endpoint reachable"].status == "pass"
    assert not ok(steps)


async def test_an_unknown_meeting_fails_its_step(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    settings = await set_up(control, info, tmp_path)
    known = await control.meeting("Known")
    gone = MeetingConfig(
        link="https://teams.microsoft.com/meet/2151234567890?p=Ab3xYz9Q", organizer_id=organizer(known)
    )
    steps = await Doctor(settings.model_copy(update={"meetings": [*settings.meetings, gone]})).run()
    [step] = failures(steps)
    assert step.name == "meeting meetings[2]" and "not found" in step.detail and "2151234567890" in step.detail
    assert "organizer_id" in (step.fix or "")


async def test_graph_403_points_at_the_application_access_policy(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    settings = await set_up(control, info, tmp_path)
    rule = {"action": "status", "path": "/v1.0/users/*", "method": "GET", "status": 403}
    await control.ok("PUT", "/sandbox/v1/faults", {"rules": [rule]})
    steps = await Doctor(settings).run()
    refused = failures(steps)
    assert [s.name for s in refused] == ["meeting Weekly sync", "meeting Planning"]
    assert all("HTTP 403" in s.detail and "Grant-CsApplicationAccessPolicy" in (s.fix or "") for s in refused)


def on_browser(settings: Settings, **browser: Any) -> Settings:
    """The browser connector, as a real tenant uses it; on the sandbox its pages load the stand-in SDK."""
    calls = settings.calls.model_copy(
        update={"connector": "browser", "browser": settings.calls.browser.model_copy(update=browser)}
    )
    return settings.model_copy(update={"calls": calls})


async def test_no_chromium_fails_the_connector_step(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    settings = on_browser(await set_up(control, info, tmp_path), chromium=str(tmp_path / "no" / "chromium"))
    steps = await Doctor(settings, join=True).run()
    step = by_name(steps)["call connector"]
    assert step.status == "fail" and "no Chromium at" in step.detail and "apt-get install chromium" in (step.fix or "")
    assert by_name(steps)["join"].status == "skip"


async def test_the_browser_connector_loads_the_sdk_and_its_test_guests_join_and_chat(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    needs_chromium()
    settings = on_browser(await set_up(control, info, tmp_path))
    steps = await Doctor(settings, join=True, join_timeout_s=30).run()
    assert failures(steps) == [], "\n".join(lines(steps))
    found = by_name(steps)
    assert found["call connector"].detail.startswith("browser: Chromium at ")
    assert "stand-in SDK" in found["call connector"].detail
    assert found["call connector: the Calling SDK loads in a page"].status == "pass"
    assert found["meeting Weekly sync: a test guest joins and chats"].detail == "joined, sent a test message, left"


async def test_chat_refused_in_the_call_fails_the_join(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    settings = await set_up(control, info, tmp_path)
    await control.ok("PUT", "/sandbox/v1/guest-chat", {"enabled": False})
    steps = await Doctor(settings, join=True, join_timeout_s=10).run()
    refused = failures(steps)
    assert [s.name for s in refused] == [
        "meeting Weekly sync: a test guest joins and chats",
        "meeting Planning: a test guest joins and chats",
    ]
    assert all("chat is refused while in the call" in s.detail for s in refused)
    assert all("MeetingChatEnabledType" in (s.fix or "") for s in refused)


async def test_a_lobby_nobody_opens_fails_the_join(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    settings = await set_up(control, info, tmp_path, lobby="manual")
    steps = await Doctor(settings, join=True, join_timeout_s=1).run()
    refused = failures(steps)
    assert len(refused) == 2 and all("waited 1 s in the lobby" in s.detail for s in refused)
    assert all("AutoAdmittedUsers" in (s.fix or "") for s in refused)


# the command ---------------------------------------------------------------------------------------------------


def _toml(settings: Settings, info: SandboxInfo) -> str:
    meeting = settings.meetings[0]
    return f"""
[bridge]
public_url = "{PUBLIC_URL}"

[acs]
connection_string = "env:DOCTOR_ACS"
ca_file = "{info.ca_file}"

[graph]
tenant_id = "{info.tenant_id}"
client_id = "{info.client_id}"
client_secret = "env:DOCTOR_GRAPH"
authority = "{info.authority_host}"
base_url = "{info.graph_base_url}"

[calls]
sandbox_endpoint = "{info.endpoint}"

[sms]
gateway = "acs"
number = "{info.sms_number}"
events_secret = "env:DOCTOR_SMS"

[[meetings]]
link = "{meeting.link}"
code = "111111"
name = "Weekly sync"
"""


async def _doctor(config: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    # A subprocess the test's loop waits on without blocking: that loop serves the sandbox it checks.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "doctor", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=os.environ | env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.parametrize("key", ["right", "wrong"])
async def test_the_command_prints_one_line_per_step_and_exits_1_on_a_failure(
    control: Control, info: SandboxInfo, tmp_path: Path, key: str
) -> None:
    settings = await set_up(control, info, tmp_path)
    config = tmp_path / "bridge.toml"
    config.write_text(_toml(settings, info), encoding="utf-8")
    connection = info.connection_string
    if key == "wrong":
        connection = connection.split("accesskey=")[0] + "accesskey=" + "A" * 86 + "=="
    env = {"DOCTOR_ACS": connection, "DOCTOR_GRAPH": info.client_secret, "DOCTOR_SMS": "sms-events-code-2b9"}
    status, out = await _doctor(config, env)
    shown = out.splitlines()
    assert shown[0].startswith("\u2713 configuration valid: ACS at ")
    assert shown[2].startswith("\u2713 credential accepted: " if key == "right" else "\u2717 credential accepted: ")
    assert status == (0 if key == "right" else 1) and shown[-1].endswith("passed" if key == "right" else "failed")
    assert info.connection_string.split("accesskey=")[1] not in out and info.client_secret not in out
    status, out = await _doctor(config, env, "--json")
    body = json.loads(out)
    assert body["ok"] is (key == "right") and body["steps"][0] == {
        "name": "configuration valid",
        "status": "pass",
        "detail": f"ACS at {info.endpoint}, signing in with the access key",
    }


async def test_a_bad_configuration_is_the_first_step_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[acs]\nendpoint = "https://contoso.communication.azure.com/"\n', encoding="utf-8")
    status, out = await _doctor(config, {})
    assert status == 1
    assert out.splitlines()[0].startswith("\u2717 configuration valid: acs.credential: ")


async def test_the_test_message_reaches_no_user_of_a_running_bridge(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    meeting = await control.meeting("Weekly sync")
    config = MeetingConfig(link=meeting["joinWebUrl"], code="111111", name="Weekly sync")
    async with bridge_for(info, tmp_path, config) as (bridge, receiver, secret):
        user = {"id": "ann", "displayName": "Ann"}
        assert (await bridge.send("app", secret, {"type": "join", "user": user, "meeting": "111111"}))[0] == 202
        await wait_for(lambda: _in_call(bridge), what="ann in the call")
        steps = await Doctor(_sound(bridge.settings), join=True, join_timeout_s=10).run()
        assert by_name(steps)["meeting Weekly sync: a test guest joins and chats"].status == "pass"
        after = {"from": meeting["organizerId"], "html": "<p>after the check</p>"}
        await control.ok("POST", f"/sandbox/v1/meetings/{meeting['id']}/messages", after)

        async def arrived() -> list[str]:
            return [m["text"] for m in receiver.of("message", "ann")]

        texts = await wait_for(arrived, what="the message after the check")
        assert texts == ["after the check"]


async def _in_call(bridge: Any) -> bool:
    return any(s.state == SessionState.IN_CALL for s in await bridge.store.sessions())


@pytest.mark.parametrize("token", ["right", "wrong"])
async def test_the_sms_step_asks_twilio_for_the_account_and_its_number(
    control: Control, info: SandboxInfo, tmp_path: Path, token: str
) -> None:
    settings = _sound(bridge_settings(info, tmp_path, clients={}, meetings=[], sms={"gateway": "twilio"}))
    settings = await twilio_on_sandbox(settings, info)
    if token == "wrong":
        twilio = settings.twilio.model_copy(update={"auth_token": SecretStr("0" * 32)})
        settings = settings.model_copy(update={"twilio": twilio})
    step = by_name(await Doctor(settings).run())["SMS"]
    if token == "right":
        assert step.status == "pass" and f"{settings.sms.number} is its number" in step.detail
    else:
        assert step.status == "fail" and "HTTP 401" in step.detail and "auth_token" in (step.fix or "")


async def test_on_entra_id_the_credential_step_names_the_sign_in(
    monkeypatch: pytest.MonkeyPatch, control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", info.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", info.identity_header)
    settings = await set_up(control, info, tmp_path)
    acs = settings.acs.model_copy(
        update={"connection_string": None, "given_endpoint": info.endpoint, "credential": "default"}
    )
    steps = await Doctor(settings.model_copy(update={"acs": acs}), join=True, join_timeout_s=10).run()
    assert failures(steps) == [], "\n".join(lines(steps))
    assert "signed in with Entra ID (DefaultAzureCredential)" in by_name(steps)["credential accepted"].detail
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    step = by_name(await Doctor(settings.model_copy(update={"acs": acs})).run())["credential accepted"]
    assert step.status == "fail" and "managed identity" in (step.fix or "")


async def test_without_an_acs_resource_there_is_nothing_real_to_check() -> None:
    steps = await Doctor(load_settings(None, environ={})).run()
    assert [s.status for s in steps] == ["pass", "skip"] and "embedded sandbox" in steps[0].detail
