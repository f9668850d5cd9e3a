"""Health, readiness and Prometheus metrics of a running bridge, after real traffic through the sandbox."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from pydantic import SecretStr

from bot.config import MeetingConfig
from bot.models import SessionState
from bot.sandbox import SandboxInfo
from tests.support.bridge import Bridge, bridge_for, bridge_settings, wait_for
from tests.support.metrics import scrape
from tests.support.sandbox import Control


async def test_health_ready_and_metrics_move_with_traffic(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    meeting = await control.meeting()
    config = MeetingConfig(link=meeting["joinWebUrl"], code="31337")
    async with bridge_for(info, tmp_path, config) as (bridge, receiver, secret):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{bridge.base}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
            async with http.get(f"{bridge.base}/readyz") as resp:
                body = await resp.json()
                assert resp.status == 200, body
                assert body["checks"] == {"store": True, "acs": True, "channels": True}
        before = await scrape(bridge)
        assert before[("bridge_sessions", (("state", "in_call"),))] == 0
        await bridge.send("app", secret, {"type": "join", "user": {"id": "ann"}, "meeting": "31337"})

        async def in_call() -> bool:
            return any(s.state == SessionState.IN_CALL for s in await bridge.store.sessions())

        await wait_for(in_call, what="in call")
        await bridge.send("app", secret, {"type": "message", "user": {"id": "ann"}, "meeting": "31337", "text": "one"})
        await control.ok(
            "POST",
            f"/sandbox/v1/meetings/{meeting['id']}/messages",
            {"from": meeting["organizerId"], "html": "<p>two</p>"},
        )

        async def settled() -> bool:
            return bool(receiver.of("message", "ann")) and len(receiver.of("notice", "ann")) >= 1

        await wait_for(settled, what="traffic both ways")

        async def counted() -> bool:
            now = await scrape(bridge)
            return now.get(("bridge_messages_relayed_total", (("channel", "webhook"), ("direction", "in")))) == 1

        await wait_for(counted, what="the inbound message counted")
        after = await scrape(bridge)
        out_delivered = len(receiver.received)
        assert after[("bridge_messages_relayed_total", (("channel", "webhook"), ("direction", "out")))] == out_delivered
        assert after[("bridge_deliveries_final_total", (("direction", "in"), ("state", "delivered")))] == 1
        assert after[("bridge_sessions", (("state", "in_call"),))] == 1
        assert after[("bridge_outbox_depth", (("direction", "in"),))] == 0
        assert after[("bridge_token_refreshes_total", ())] >= 1
        assert after[("bridge_relay_latency_seconds_count", (("direction", "in"),))] == 1


async def test_not_ready_when_acs_is_unreachable(info: SandboxInfo, tmp_path: Path) -> None:
    settings = bridge_settings(info, tmp_path, clients={}, meetings=[])
    unreachable = "endpoint=https://127.0.0.1:9/;accesskey=" + info.connection_string.split("accesskey=")[1]
    settings = settings.model_copy(
        update={"acs": settings.acs.model_copy(update={"connection_string": SecretStr(unreachable)})}
    )
    bridge = await Bridge(settings).start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{bridge.base}/readyz") as resp:
            body = await resp.json()
        assert resp.status == 503
        assert body["checks"]["acs"] is False and body["checks"]["store"] is True
    finally:
        await bridge.stop()
