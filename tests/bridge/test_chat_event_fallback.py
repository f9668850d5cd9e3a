"""Chat events as the reader's clock: a meeting whose events stop is polled again, and lost or repeated events
neither lose nor double a delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.channels.chat_events import CHAT_EVENTS
from bot.channels.chat_events import PATH as EVENTS_PATH
from bot.config import MeetingConfig, Settings
from bot.models import SessionState
from bot.relay import cadence
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, Receiver, bridge_for, wait_for
from tests.support.metrics import scrape
from tests.support.sandbox import Control

SECRET = "event-door-secret-456"
CODE = "555222"
SAFETY_S = 10.0
ACTIVE_S = 0.2
MISSED = ("bridge_chat_events_missed_total", ())
POLLED = ("bridge_meetings_polled_for_lost_events", ())


def _with_events(settings: Settings) -> Settings:
    return settings.model_copy(update={"events": settings.events.model_copy(update={"secret": SecretStr(SECRET)})})


@dataclass
class Rig:
    bridge: Bridge
    receiver: Receiver
    secret: str
    control: Control
    meeting: dict[str, Any]
    subscription: str = ""

    async def join(self, *users: str) -> None:
        for user in users:
            event = {"type": "join", "user": {"id": user, "displayName": user.title()}, "meeting": CODE}
            status, _ = await self.bridge.send("app", self.secret, event)
            assert status == 202

        async def in_call() -> bool:
            sessions = await self.bridge.store.sessions(states=[SessionState.IN_CALL])
            return len(sessions) == len(users)

        await wait_for(in_call, what="everyone in the call")

    async def subscribe(self, **faults: Any) -> None:
        body = {
            "endpoint": f"{self.bridge.base}{EVENTS_PATH}?code={SECRET}",
            "eventTypes": list(CHAT_EVENTS),
            "schema": "EventGrid",
        }
        sub = await self.control.ok("POST", "/sandbox/v1/event-subscriptions", body | {"faults": faults or None})
        self.subscription = sub["id"]

    async def faults(self, **faults: Any) -> None:
        await self.control.ok("PUT", f"/sandbox/v1/event-subscriptions/{self.subscription}/faults", faults)

    async def teams_says(self, text: str) -> str:
        body = {"from": self.meeting["organizerId"], "html": f"<p>{text}</p>"}
        message = await self.control.ok("POST", f"/sandbox/v1/meetings/{self.meeting['id']}/messages", body)
        return str(message["id"])

    def texts(self, user: str) -> list[str]:
        return [r["text"] for r in self.receiver.of("message", user)]

    async def got(self, user: str, text: str, limit_s: float = 20.0) -> None:
        async def arrived() -> bool:
            return text in self.texts(user)

        await wait_for(arrived, limit_s=limit_s, what=f"{text!r} at {user}")

    async def metric(self, key: tuple[str, tuple[()]]) -> float:
        return (await scrape(self.bridge)).get(key, 0.0)


@pytest.fixture
async def rig(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Rig]:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code=CODE)
    # Idle polling and the idle spell so long that, while events are relied on, only an event or a safety read
    # makes the reader read; once it polls, it polls at the active interval for the rest of the test.
    relay = {"poll_active_s": ACTIVE_S, "poll_idle_s": 600.0, "idle_after_s": 600.0, "poll_safety_s": SAFETY_S}
    async with bridge_for(info, tmp_path, config, adjust=_with_events, **relay) as (bridge, receiver, secret):
        yield Rig(bridge, receiver, secret, control, meeting)


async def test_a_meeting_whose_events_stop_is_polled_from_the_next_safety_read_until_they_come_back(rig: Rig) -> None:
    await rig.join("ann")
    await rig.subscribe()
    await rig.teams_says("by event")
    await rig.got("ann", "by event", limit_s=SAFETY_S / 2)  # no poll would come in time: the event carried it
    assert await rig.metric(MISSED) == 0

    # The meeting's events stop while its leg stays in the call. Only the next safety read can find this one.
    await rig.faults(lose=1.0, subject=f"thread/{rig.meeting['threadId']}/*")
    await rig.teams_says("found by the safety read")
    await rig.got("ann", "found by the safety read", limit_s=2 * SAFETY_S)

    async def fell_back() -> bool:
        return await rig.metric(MISSED) == 1 and await rig.metric(POLLED) == 1

    await wait_for(fell_back, limit_s=cadence.EVENT_GRACE_S + 5, what="the meeting back on polling")
    # Still no event; a safety read is SAFETY_S away, a poll ACTIVE_S. Half the safety interval tells them apart.
    await rig.teams_says("found by polling")
    await rig.got("ann", "found by polling", limit_s=SAFETY_S / 2)

    # Events come back: after a few arrive with no miss they are relied on again.
    await rig.control.call("DELETE", f"/sandbox/v1/event-subscriptions/{rig.subscription}/faults")
    for n in range(cadence.TRUST_AFTER):
        await rig.teams_says(f"events again {n}")
        await rig.got("ann", f"events again {n}")

    async def on_events() -> bool:
        return await rig.metric(POLLED) == 0

    await wait_for(on_events, what="the meeting back on its events")
    assert rig.texts("ann") == [
        "by event",
        "found by the safety read",
        "found by polling",
        *[f"events again {n}" for n in range(cadence.TRUST_AFTER)],
    ]


async def test_lost_and_repeated_events_neither_lose_nor_double_a_delivery(rig: Rig) -> None:
    await rig.join("ann", "bob")
    await rig.subscribe(lose=0.3, duplicate=0.5, delayS=1.0, seed=14)
    posted = [f"teams {n}" for n in range(24)]
    for n, text in enumerate(posted):
        await rig.teams_says(text)
        if n % 6 == 5:
            # One of ann's own messages: relayed to bob (its event too may be lost or repeated), never back to her.
            status, _ = await rig.bridge.send(
                "app", rig.secret, {"type": "message", "user": {"id": "ann"}, "meeting": CODE, "text": f"ann {n}"}
            )
            assert status == 202
    # The last event of all is lost too, once the copies of earlier ones have come: no later event's read comes
    # to find its message.
    await wait_for(lambda: _drained(rig), limit_s=10, what="every event delivered")
    await rig.faults(lose=1.0)
    await rig.teams_says("teams last")
    posted.append("teams last")
    for user in ("ann", "bob"):
        await rig.got(user, posted[-1], limit_s=3 * SAFETY_S)
    await rig.got("bob", "ann 23", limit_s=3 * SAFETY_S)
    stats = (await rig.control.ok("GET", f"/sandbox/v1/event-subscriptions/{rig.subscription}"))["stats"]
    assert stats["lost"] > 0 and stats["duplicated"] > 0, stats
    # Whatever came late has come and been read: the copies of repeated events, then a poll or safety read.
    await wait_for(lambda: _drained(rig), limit_s=10, what="every event delivered")
    polls = rig.bridge.relay.readers.polls
    await wait_for(lambda: _read_since(rig, polls), limit_s=2 * SAFETY_S, what="a read after the last event")
    await wait_for(lambda: _outbox_empty(rig), what="every delivery made")
    assert rig.texts("ann") == posted
    ann_relayed = [f"ann {n}" for n in range(5, 24, 6)]
    assert [t for t in rig.texts("bob") if t.startswith("ann")] == ann_relayed
    assert [t for t in rig.texts("bob") if t.startswith("teams")] == posted


async def _drained(rig: Rig) -> bool:
    sub = await rig.control.ok("GET", f"/sandbox/v1/event-subscriptions/{rig.subscription}")
    return bool(sub["stats"]["pending"] == 0)


async def _read_since(rig: Rig, polls: int) -> bool:
    return rig.bridge.relay.readers.polls > polls


async def _outbox_empty(rig: Rig) -> bool:
    return not any((await rig.bridge.store.outbox_depth()).values())
