"""SMS compliance end to end, over both gateways (ACS SMS and the Twilio stand-in) against the sandbox: the opt-in
confirmation and the HELP and STOP wording, the consent ledger (its rows, across a forget and a restart, the admin
API's filters and CSV, the CLI's "may we text this number"), and opt-outs written in words."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.commands import reply
from bot.config import SmsSection
from bot.consent import CSV_COLUMNS, ConsentRecord
from bot.models import DeliveryState, SessionState
from bot.relay.consent import CONSENT
from bot.sandbox import SandboxInfo
from bot.sms_text import segments
from bot.store import StoreUrl
from tests.support.bridge import Bridge, wait_for
from tests.support.sandbox import Control
from tests.support.sms import CODE, IN_CHAT, MEETING_NAME, OTHER, PHONE, SmsWorld, sms_world

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "operator-token-for-consent-0123"
PROGRAM = {"program": "Contoso Updates", "support": "help@contoso.example"}


@pytest.fixture(params=["acs", "twilio"])
def gateway(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def wording(key: str, settings: dict[str, Any] | None = None, **values: str) -> str:
    """A standard text as the bridge words it under these SMS settings."""
    return reply(key, {}, **SmsSection(**(settings or {})).wording(), **values)


async def records(w: SmsWorld, phone: str = PHONE, count: int = 0) -> list[ConsentRecord]:
    """The phone's ledger rows, newest first, once there are at least `count` of them."""
    ledger = w.bridge.app[CONSENT]

    async def found() -> list[ConsentRecord]:
        rows = await w.bridge.store.consent_records(number_hash=ledger.hash(phone))
        return rows if len(rows) >= count else []

    return list(await wait_for(found, what=f"{count} consent records")) if count else await found()


async def opted_out(w: SmsWorld, phone: str = PHONE) -> bool:
    user = await w.bridge.store.get_user(f"sms:{phone}")
    return user is not None and user.opted_out


async def api(bridge: Bridge, method: str, path: str, body: Any = None) -> tuple[int, str, str]:
    assert bridge.http is not None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    data = json.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with bridge.http.request(method, f"{bridge.base}/api/v1{path}", data=data, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.text()


# the standard wording ---------------------------------------------------------------------------------------


async def test_the_first_text_to_a_number_is_its_opt_in_confirmation(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    async with sms_world(control, info, tmp_path, gateway, sms=PROGRAM) as w:
        sent = await w.text(f"join {CODE}")
        first, second = await w.until_inbox(2)
        confirmation = wording("opt_in", PROGRAM, meeting=MEETING_NAME)
        assert first == confirmation and IN_CHAT in second
        for part in ("Contoso Updates", "Msgs vary with the meeting", "Msg & data rates may apply", "HELP", "STOP"):
            assert part in confirmation
        assert segments(confirmation) == 1

        [row] = await records(w, count=1)
        entry = row.entry
        assert (entry.event, entry.method, entry.matched, entry.request) == (
            "opt_in",
            "keyword",
            f"JOIN {CODE}",
            f"join {CODE}",
        )
        assert (entry.gateway, entry.provider_id, entry.meeting_name) == (gateway, sent, MEETING_NAME)
        assert entry.program == "Contoso Updates" and entry.confirmation == confirmation
        assert row.number_tail == "0100" and PHONE not in row.number_hash
        assert entry.confirmation_id is not None
        delivery = await w.bridge.store.get_delivery(entry.confirmation_id)
        assert delivery is not None and delivery.state == DeliveryState.DELIVERED

        await w.text("HELP")
        [help_text] = await w.until_text("help@contoso.example")
        assert help_text == wording("help", PROGRAM) and help_text.startswith("Contoso Updates")
        assert "STOP" in help_text and segments(help_text) == 1

        # Joining again is no new consent: no second confirmation, no second record.
        await w.text(f"JOIN {CODE}")
        await w.until_text(f"{MEETING_NAME}: connected")
        assert (await w.inbox()).count(confirmation) == 1
        assert len(await records(w)) == 1


@pytest.mark.parametrize("provider_replies", [False, True], ids=["bridge-confirms", "provider-confirms"])
async def test_stop_is_recorded_with_the_confirmation_it_got(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str, provider_replies: bool
) -> None:
    async with sms_world(control, info, tmp_path, gateway, sms={"provider_sends_stop_reply": provider_replies}) as w:
        await w.joined()
        sent = await w.text("Stop.")
        out, opted_in = await records(w, count=2)
        assert opted_in.entry.event == "opt_in"
        entry = out.entry
        assert (entry.event, entry.method, entry.matched, entry.request) == ("opt_out", "keyword", "STOP", "Stop.")
        assert entry.provider_id == sent and entry.meeting_name == MEETING_NAME
        assert await opted_out(w)
        await w.until_state(SessionState.LEFT)
        confirmations = [d for d in await w.outbound() if d.body.get("always")]
        if provider_replies:
            # The provider answers STOP itself: the bridge sends none of its own, and records that it did not.
            assert confirmations == [] and entry.confirmation is None and entry.confirmation_id is None
        else:
            stop_text = wording("stop")
            assert "no further texts" in stop_text and "START" in stop_text
            assert entry.confirmation == stop_text
            assert [d.id for d in confirmations] == [entry.confirmation_id]


# opt-out in words ------------------------------------------------------------------------------------------


async def test_an_opt_out_in_words_is_a_stop_and_a_near_one_is_asked_about(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str
) -> None:
    async with sms_world(control, info, tmp_path, gateway) as w:
        await w.joined()
        await w.joined(OTHER)  # a witness: what it gets, the phone would have had too

        asked = await w.text("ok stop texting me now")
        assert await w.until_handled(asked) == {"handled": "opt-out question"}
        await w.until_text(wording("opt_out_question"))
        assert not await opted_out(w) and len(await records(w)) == 1
        await w.post("still subscribed")
        await w.until_text("Megan: still subscribed")

        said = await w.text("Please stop texting me!")
        assert await w.until_handled(said) == {"handled": "stop"}
        # No provider takes these words for STOP, so the bridge's own confirmation reaches the phone.
        await w.until_text(wording("stop"))
        assert await opted_out(w)
        await w.until_state(SessionState.LEFT)
        out, _ = await records(w, count=2)
        assert (out.entry.event, out.entry.method, out.entry.matched) == ("opt_out", "free_text", "stop texting me")
        assert out.entry.request == "Please stop texting me!" and out.entry.confirmation == wording("stop")

        seen = await w.inbox()
        await w.post("after the stop")
        await w.until_text("Megan: after the stop", OTHER)
        assert await w.inbox() == seen
        # Neither text reached the meeting.
        assert not [m for m in await w.thread() if "stop texting me" in m[1]]


@pytest.mark.parametrize("mode", ["act", "off"])
async def test_a_near_opt_out_acted_on_or_relayed_as_configured(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str, mode: str
) -> None:
    async with sms_world(control, info, tmp_path, gateway, sms={"free_text_opt_out": mode}) as w:
        await w.joined()
        await w.text("ok stop texting me now")
        if mode == "act":
            await w.until_text(wording("stop"))
            assert await opted_out(w)
            out, _ = await records(w, count=2)
            assert out.entry.method == "free_text" and out.entry.matched == "stop texting me"
        else:
            await w.until_thread("ok stop texting me now")
            assert not await opted_out(w) and len(await records(w)) == 1


# the ledger: forget, restart, the admin API, the CLI ------------------------------------------------------------


async def cli_consent(bridge: Bridge, folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("BRIDGE_ADMIN_TOKEN", "BRIDGE_URL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "consent",
        *args,
        "--url",
        bridge.base,
        "--token",
        TOKEN,
        cwd=folder,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_ledger_outlives_a_forget_and_a_restart(
    control: Control, info: SandboxInfo, tmp_path: Path, gateway: str, store_url: StoreUrl
) -> None:
    async with sms_world(control, info, tmp_path, gateway, admin_token=TOKEN, store_url=store_url) as w:
        assert w.bridge.app[CONSENT].prune in w.bridge.relay.sweeps  # retention runs with the periodic sweep
        await w.joined()
        await w.text("STOP")
        await records(w, count=2)
        status, _, _ = await api(w.bridge, "POST", "/users/sms%3A%2B15550100/forget")
        assert status == 204 and await w.bridge.store.get_user(f"sms:{PHONE}") is None
        assert len(await records(w)) == 2  # forget deletes the user and their messages, never the ledger

        # Forgotten, the number is a stranger to the store, but the ledger still says it opted out.
        hello = await w.text("hello?")
        assert await w.until_handled(hello) == {"handled": "opted out"}
        assert await opted_out(w)
        await w.text("START")
        await w.until_text(wording("start"))
        [started, _, _] = await records(w, count=3)
        assert (started.entry.event, started.entry.matched) == ("opt_in", "START")

        settings = w.bridge.settings
        await w.bridge.stop()
        bridge = await Bridge(settings).start()
        try:
            status, _, text = await api(bridge, "POST", "/consent/check", {"number": PHONE})
            check = json.loads(text)
            assert status == 200 and check["mayText"] and "opted in by texting START" in check["reason"]
            assert check["number"] != PHONE and check["numberTail"] == "0100" and check["optedOut"] is False
            assert [r["event"] for r in check["records"]] == ["opt_in", "opt_out", "opt_in"]

            status, kind, text = await api(bridge, "GET", "/consent?format=csv")
            assert status == 200 and kind == "text/csv"
            rows = list(csv.DictReader(io.StringIO(text)))
            assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 3
            assert {r["numberHash"] for r in rows} == {check["numberHash"]} and PHONE.lstrip("+") not in text
            assert [r["matched"] for r in rows] == ["START", "STOP", f"JOIN {CODE}"]

            status, _, text = await api(bridge, "GET", "/consent?event=opt_out&digits=0100")
            assert status == 200 and [r["matched"] for r in json.loads(text)["records"]] == ["STOP"]
            status, _, text = await api(bridge, "GET", f"/consent?meeting={CODE}&event=opt_in")
            assert status == 200 and [r["matched"] for r in json.loads(text)["records"]] == [f"JOIN {CODE}"]
            status, _, text = await api(bridge, "GET", "/consent?digits=12")
            assert status == 400 and "digits" in json.loads(text)["reason"]
            status, _, text = await api(bridge, "POST", "/consent/check", {"number": "not a number"})
            assert status == 400 and json.loads(text)["field"] == "number"

            said = await cli_consent(bridge, tmp_path, "--number", PHONE)
            assert "may be texted" in said and "START" in said and PHONE not in said
            listed = await cli_consent(bridge, tmp_path, "--csv", "--event", "opt_out")
            assert listed.splitlines()[0] == ",".join(CSV_COLUMNS) and len(listed.splitlines()) == 2
        finally:
            await bridge.stop()
