"""Provider ids kept to drop repeats (finding 8 of the security probe), over the wire: bounded in size and in time.

A client within its rate limit could send 7,000-byte webhook-ids, each stored for ever. Ids longer than 256 bytes
are refused with 400 and a reason at every door that keeps them (webhook-id, SMS message ids, Event Grid event
ids), and the records are pruned once older than relay.repeat_retention_days, which outlasts every sender's
retries.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.channels.sms.acs import PATH as ACS_EVENTS_PATH
from bot.channels.sms.twilio import INBOUND_PATH as TWILIO_PATH
from bot.channels.sms.twilio import twilio_signature
from bot.channels.webhook import sign
from bot.config import Settings
from bot.sandbox import SandboxInfo
from tests.hardening.operator_bridge import CODE, Probe, operator_bridge
from tests.hardening.test_forgery import post_form, twilio_door, twilio_text
from tests.support.bridge import Bridge, wait_for
from tests.support.sandbox import Control
from tests.support.sms import sms_received_event, sms_world

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def join(probe: Probe, webhook_id: str) -> tuple[int, dict[str, Any]]:
    """A signed join for ann: accepted joins are what the door remembers by id."""
    payload = json.dumps({"type": "join", "user": {"id": "ann"}, "meeting": CODE})
    headers = sign(probe.secret, webhook_id, payload)
    async with probe.http.post(f"{probe.base}/channels/webhook/app", data=payload, headers=headers) as resp:
        return resp.status, await resp.json()


def inbox_ids(store_file: Path) -> set[str]:
    with closing(sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)) as db:
        return {row[0] for row in db.execute("SELECT provider_id FROM inbox")}


def age(store_file: Path, provider_id: str, days: float) -> None:
    """Moves one record's arrival back in time, as if it had been stored `days` ago."""
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="microseconds")
    with closing(sqlite3.connect(store_file)) as db, db:
        assert db.execute("UPDATE inbox SET received_at=? WHERE provider_id=?", (when, provider_id)).rowcount == 1


def retention(days: float) -> Any:
    def adjust(settings: Settings) -> Settings:
        return settings.model_copy(update={"relay": settings.relay.model_copy(update={"repeat_retention_days": days})})

    return adjust


@pytest.mark.parametrize(
    "webhook_id",
    [
        pytest.param("msg_" + "x" * 7000, id="7000-bytes"),
        pytest.param("x" * 257, id="257-bytes"),
        pytest.param("\u00e9" * 129, id="258-bytes-in-129-characters"),
    ],
)
async def test_a_webhook_id_longer_than_256_bytes_is_refused_with_a_reason(
    control: Control, info: SandboxInfo, tmp_path: Path, webhook_id: str
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        status, body = await join(probe, webhook_id)
        assert status == 400, body
        assert body["error"] == "bad_request" and body["reason"].startswith("webhook-id:"), body
        assert "256" in body["reason"]
        assert inbox_ids(probe.bridge.settings.store_file) == set()
        # A short id still goes through, and one of exactly 256 bytes.
        short = f"msg_{uuid.uuid4().hex}"
        for ok in (short, "y" * 256):
            status, body = await join(probe, ok)
            assert status == 202, body
        assert inbox_ids(probe.bridge.settings.store_file) == {short, "y" * 256}


async def test_an_acs_message_id_or_event_id_longer_than_256_bytes_is_refused(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with sms_world(control, info, tmp_path, "acs") as w:
        secret = w.bridge.settings.sms.events_secret
        assert secret is not None
        path = f"{ACS_EVENTS_PATH}?code={secret.get_secret_value()}"
        long_message = sms_received_event(info, "Incoming_" + "m" * 300, "hello")
        long_event = sms_received_event(info, "Incoming_short", "hello") | {"id": "e" * 300}
        for event, named in ((long_message, "data.messageId"), (long_event, "id")):
            status, answer = await w.post_raw(path, json=[event])
            assert status == 400, answer
            reason = json.loads(answer)["reason"]
            assert named in reason and "256" in reason, reason
        assert await w.inbound() == [] and await w.inbox() == []
        assert inbox_ids(w.bridge.settings.store_file) == set()


async def test_a_twilio_message_sid_longer_than_256_bytes_is_refused(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with sms_world(control, info, tmp_path, "twilio") as w:
        door = twilio_door(w)
        form = twilio_text(w, "hello", sid="SM" + "s" * 300)
        headers = FORM | {"X-Twilio-Signature": twilio_signature(door.token, door.url, form)}
        status, answer = await post_form(w, TWILIO_PATH, headers, urlencode(form))
        assert status == 400, answer
        assert "MessageSid" in json.loads(answer)["reason"] and "256" in answer
        assert inbox_ids(w.bridge.settings.store_file) == set()


async def test_repeat_records_older_than_the_retention_are_pruned_and_younger_ones_kept(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with operator_bridge(control, info, tmp_path) as probe:
        for webhook_id in ("msg_old", "msg_recent", "msg_fresh"):
            await probe.bridge.store.record_inbound("webhook:app", webhook_id, 202, {"status": "queued"}, None)
        settings = probe.bridge.settings
    store_file = settings.store_file
    age(store_file, "msg_old", 8)  # beyond the default retention, 7 days
    age(store_file, "msg_recent", 6)
    restarted = await Bridge(settings).start()  # pruned as it starts, then every so often
    try:
        assert inbox_ids(store_file) == {"msg_recent", "msg_fresh"}
    finally:
        await restarted.stop()
    # A longer retention keeps what the default would prune.
    age(store_file, "msg_recent", 20)
    kept = await Bridge(retention(30)(settings)).start()
    try:
        assert inbox_ids(store_file) == {"msg_recent", "msg_fresh"}
    finally:
        await kept.stop()


async def test_pruning_runs_while_the_bridge_runs(control: Control, info: SandboxInfo, tmp_path: Path) -> None:
    # A retention of two seconds: the bridge prunes at least twice per retention, so the record goes soon after.
    async with operator_bridge(control, info, tmp_path, adjust=retention(2 / 86400)) as probe:
        await probe.bridge.store.record_inbound("webhook:app", "msg_short_lived", 202, {}, None)
        store_file = probe.bridge.settings.store_file
        assert inbox_ids(store_file) == {"msg_short_lived"}

        async def pruned() -> bool:
            return not inbox_ids(store_file)

        await wait_for(pruned, what="the record to be pruned while the bridge runs")
