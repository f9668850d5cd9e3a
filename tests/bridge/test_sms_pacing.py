"""What the crash and fault soak found, held down by small tests: a throttled SMS number failed texts after a
few seconds, texts went out unpaced, after a restart the pacing started blind, and a text's retry could give ACS
another first-sent time than its first try."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from bot.acs.sms import AcsSmsGateway
from bot.channels.sms.channel import SendGate, SmsChannel
from bot.config import SmsSection
from bot.models import DeliveryState, Direction
from bot.relay.pacing import Pacer
from bot.sandbox import SandboxInfo
from bot.store import NewDelivery, SqliteStore, utcnow
from tests.support.bridge import wait_for
from tests.support.sandbox import Control
from tests.support.sms import sms_world


async def test_a_throttled_number_still_delivers(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    """More 429s in a row than relay.max_attempts (8): the text waits them out instead of failing."""
    async with sms_world(control, info, tmp_path, "acs") as world:
        await world.joined()
        rule = {"method": "POST", "path": "/sms", "action": "status", "status": 429, "retryAfter": 0, "count": 12}
        await control.ok("PUT", "/sandbox/v1/faults", {"rules": [rule]})
        try:
            await world.post("<p>through the throttle</p>")
            await world.until_text("Megan: through the throttle")
            assert (await control.ok("GET", "/sandbox/v1/faults"))["rules"][0]["fired"] == 12
        finally:
            await control.ok("DELETE", "/sandbox/v1/faults")

        async def delivered() -> bool:
            rows = [r for r in await world.outbound() if r.kind == "message"]
            return bool(rows) and all(r.state == DeliveryState.DELIVERED for r in rows)

        await wait_for(delivered, what="the throttled text marked delivered")
        [row] = [r for r in await world.outbound() if r.kind == "message"]
        assert row.attempts == 1  # the throttled tries were not counted


async def test_the_gate_paces_and_holds() -> None:
    async def nothing_sent(since: datetime) -> list[datetime]:
        return []

    gate = SendGate(((2, 0.5),), nothing_sent)
    started = time.monotonic()
    for _ in range(3):
        await gate.wait_turn()
    assert time.monotonic() - started >= 0.45  # the third waited for the window
    gate.hold(0.3)
    held = time.monotonic()
    await gate.wait_turn()
    assert time.monotonic() - held >= 0.25


async def test_the_gate_remembers_the_last_window_after_a_restart() -> None:
    """A restarted bridge counts the texts its number sent before the restart, as the provider still does."""
    asked: list[datetime] = []

    async def sent_since(since: datetime) -> list[datetime]:
        asked.append(since)
        now = utcnow()
        return [now - timedelta(seconds=0.2), now - timedelta(seconds=0.1)]

    gate = SendGate(((2, 0.8),), sent_since)
    started = time.monotonic()
    await gate.wait_turn()
    assert time.monotonic() - started >= 0.5  # the window of the two sent before the restart had to pass
    assert len(asked) == 1 and utcnow() - asked[0] < timedelta(seconds=2)


def test_the_pacer_makes_room_for_a_whole_text() -> None:
    """A split text's parts take their turns together, before the try is counted."""
    pacer = Pacer(((3, 10.0),), margin=0.0)
    pacer.record(0.0)
    pacer.record(1.0)
    assert pacer.delay(2.0) == 0.0
    assert pacer.delay(2.0, count=2) == 8.0  # the oldest must leave the window first
    assert pacer.delay(2.0, count=4) == 9.0  # more than the window holds: once it is empty


async def test_a_retry_gives_the_first_sent_time_of_the_first_try(info: SandboxInfo, tmp_path: Path) -> None:
    """The first try is recorded just before a second ends and sent just after it: its retry (the answer was lost)
    must still give ACS the same repeatabilityFirstSent, else ACS refuses it with 400 and the delivery fails."""
    store = await SqliteStore(tmp_path / "bridge.db").open()
    gateway = AcsSmsGateway(info.connection_string, info.sms_number, connection_verify=info.ca_file)
    try:
        # Quiet hours off: the bridge's own text to a number not in a conversation; this test is about retries.
        sms = SmsSection(gateway="acs", number=info.sms_number, quiet_hours="off")
        channel = SmsChannel(gateway, store, sms)
        user = await store.upsert_user("sms:+15550177", "sms", "Guest 0177")
        delivery = NewDelivery(str(uuid.uuid4()), Direction.OUTBOUND, "", user.id, "notice", {"text": "hello"})
        await store.add_deliveries([delivery])
        [head] = await store.pending(Direction.OUTBOUND, "user_id", user.id)
        await asyncio.sleep(1 - time.time() % 1 - 0.01 + (1 if time.time() % 1 > 0.95 else 0))
        await store.mark_attempt([head.id])  # what the dispatcher does, on rows it read before
        await asyncio.sleep(0.03)
        first = await channel.deliver(user, None, [head])
        [again] = await store.pending(Direction.OUTBOUND, "user_id", user.id)
        assert await channel.deliver(user, None, [again]) == first  # answered as a repeat, not refused
    finally:
        await gateway.close()
        await store.close()
