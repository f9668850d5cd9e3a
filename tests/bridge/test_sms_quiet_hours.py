"""Quiet hours end to end, over both gateways against the sandbox: a text the bridge starts on its own (an operator
took the number out of its meeting) is held through the number's night and goes in its morning, or as soon as the
number texts again, or is dropped when it would be stale; the conversation itself (replies, the meeting's messages
while the number is in it) goes on at night.

The sandbox's numbers (+15550100) have no known time zone, so the bridge reads them in sms.quiet_hours_zone (UTC):
the tests set a night around the present moment in UTC."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.commands import DEFAULT_TEXTS
from bot.models import Delivery, DeliveryState
from bot.sandbox import SandboxInfo
from bot.store.consent import QUIET_HOLD
from tests.support.bridge import wait_for
from tests.support.sandbox import Control
from tests.support.sms import MEETING_NAME, PHONE, SmsWorld, sms_world

TAKEN_OUT = f"An operator took you out of {MEETING_NAME}."
CONVERSATION_S = 1.0


@pytest.fixture(params=["acs", "twilio"])
def gateway(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def night(ahead_s: float) -> tuple[dict[str, Any], datetime]:
    """SMS settings with quiet hours from an hour ago until `ahead_s` from now (UTC), and when they end."""
    now = datetime.now(UTC)
    end = (now + timedelta(seconds=ahead_s)).replace(microsecond=0)
    start = now - timedelta(hours=1)
    return {"quiet_hours": f"{start:%H:%M:%S}-{end:%H:%M:%S}", "conversation_s": CONVERSATION_S}, end


async def take_out(w: SmsWorld) -> None:
    """Once the number's conversation is over, an operator ends its session: the notice is the bridge's own."""
    await asyncio.sleep(CONVERSATION_S + 0.5)
    session = await w.bridge.store.current_session(f"sms:{PHONE}")
    assert session is not None
    await w.bridge.relay.presence.leave(session, "ended by an operator")


async def notice(w: SmsWorld, *, held: bool | None = None, state: DeliveryState | None = None) -> Delivery:
    """The taken-out notice's row once it is held (or not), or in the state given."""

    async def found() -> Delivery | None:
        for row in await w.outbound():
            if row.body.get("text") != TAKEN_OUT:
                continue
            is_held = (row.last_error or "").startswith(QUIET_HOLD) and row.state == DeliveryState.PENDING
            if (held is None or is_held == held) and (state is None or row.state == state):
                return row
        return None

    row: Delivery = await wait_for(found, limit_s=60, what="the notice")
    return row


async def test_at_night_the_bridges_own_text_waits_for_the_number_to_text_again(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    sms, _ = night(ahead_s=7200)
    async with sms_world(control, info, tmp_path, gateway, sms=sms) as w:
        await w.joined()  # replies and session notices: the number is in a conversation
        await w.post("a meeting message at night")
        await w.until_text("Megan: a meeting message at night")  # in the meeting: the conversation goes on
        await take_out(w)
        row = await notice(w, held=True)
        assert row.attempts == 0  # waiting is no failed try
        assert row.next_attempt_at is not None and row.next_attempt_at > datetime.now(UTC) + timedelta(minutes=30)
        assert TAKEN_OUT not in await w.inbox()

        await w.text("STATUS")  # a conversation again: what was held goes, then the answer
        await w.until_text(DEFAULT_TEXTS["status_none"])
        texts = await w.inbox()
        assert texts.index(TAKEN_OUT) < texts.index(DEFAULT_TEXTS["status_none"])
        assert (await notice(w, state=DeliveryState.DELIVERED)).attempts == 1


async def test_the_held_text_goes_when_the_night_ends(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    sms, end = night(ahead_s=20)
    async with sms_world(control, info, tmp_path, gateway, sms=sms) as w:
        await w.joined()
        await take_out(w)
        await notice(w, held=True)
        await notice(w, state=DeliveryState.DELIVERED)
        body = await w.control.ok("GET", "/sandbox/v1/phones/%2B15550100/sms")
        [sent] = [m for m in body["value"] if m["message"] == TAKEN_OUT]
        # Not before the morning: the night's end is the earliest the provider can have been handed it.
        assert datetime.fromisoformat(sent["receivedTimestamp"]) >= end


async def test_a_text_that_would_be_stale_by_morning_is_dropped_with_its_reason(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    sms, _ = night(ahead_s=7200)
    async with sms_world(control, info, tmp_path, gateway, sms={**sms, "quiet_stale_h": 1.0}) as w:
        await w.joined()
        await take_out(w)
        row = await notice(w, state=DeliveryState.FAILED)
        assert row.last_error is not None and row.last_error.startswith("stale") and QUIET_HOLD in row.last_error
        await w.text("STATUS")
        await w.until_text(DEFAULT_TEXTS["status_none"])
        assert TAKEN_OUT not in await w.inbox()
