"""Logs at INFO carry no secret, token, message text or full phone number, across a real webhook and SMS run."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.config import MeetingConfig
from bot.embedded import SMS_EVENT_TYPES
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import bridge_for, new_secret, wait_for
from tests.support.sandbox import Control

SECRET_TEXT = "the secret plans are on page 7"
TEAMS_TEXT = "teams says the launch is friday"
PHONE = "+15550142"


async def test_info_logs_hold_no_secrets_tokens_texts_or_numbers(
    control: Control, info: SandboxInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code="808080")
    async with bridge_for(info, tmp_path, config) as (bridge, receiver, secret):
        await bridge.send("app", secret, {"type": "join", "user": {"id": "ann"}, "meeting": "808080"})

        async def in_call() -> bool:
            return any(s.state == SessionState.IN_CALL for s in await bridge.store.sessions())

        await wait_for(in_call, what="in call")
        await bridge.send(
            "app", secret, {"type": "message", "user": {"id": "ann"}, "meeting": "808080", "text": SECRET_TEXT}
        )
        await control.ok(
            "POST",
            f"/sandbox/v1/meetings/{meeting['id']}/messages",
            {"from": meeting["organizerId"], "html": TEAMS_TEXT},
        )
        # A phone texts the ACS number; the sandbox's Event Grid carries it to the bridge's SMS door.
        code = bridge.settings.sms.events_secret
        assert code is not None
        await control.ok(
            "POST",
            "/sandbox/v1/event-subscriptions",
            {
                "endpoint": f"{bridge.base}/channels/acs-sms/events?code={code.get_secret_value()}",
                "eventTypes": list(SMS_EVENT_TYPES),
                "schema": "EventGrid",
            },
        )
        phone_path = f"/sandbox/v1/phones/{quote(PHONE, safe='')}/sms"
        await control.ok("POST", phone_path, {"to": info.sms_number, "message": "HELP"})

        async def answered() -> bool:
            return bool((await control.ok("GET", phone_path))["value"])

        await wait_for(answered, what="the HELP reply on the phone")

        async def delivered() -> bool:
            return any(r["text"] == TEAMS_TEXT for r in receiver.of("message", "ann"))

        await wait_for(delivered, what="the Teams message delivered")
        token = await bridge.relay.broker.token((await bridge.store.sessions())[0].identity_id or "")
        # A refused signature is logged, with its reason only.
        status, _ = await bridge.send("app", new_secret(), {"type": "join", "user": {"id": "eve"}, "meeting": "808080"})
        assert status == 401

    info_lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    text = "\n".join(info_lines)
    assert text, "the run logged nothing at INFO"
    forbidden = {
        "webhook secret": secret,
        "webhook secret body": secret.removeprefix("whsec_"),
        "access key": info.connection_string.split("accesskey=")[1],
        "ACS token": token,
        "message text": SECRET_TEXT,
        "Teams text": TEAMS_TEXT,
        "client secret": info.client_secret,
    }
    for what, value in forbidden.items():
        assert value not in text, f"{what} appears in the INFO logs"
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", text), "a JWT appears in the INFO logs"
    assert PHONE not in text and PHONE[1:] not in text, "a full phone number appears in the INFO logs"
