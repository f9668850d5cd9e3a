"""Impersonation through a display name (finding 1 of the security probe), over the wire, on every channel.

Teams must always see a bridged user's name with the meeting template's fixed part ("(app)", "(SMS)"), and never
a name that only looks like someone else's: invisible format characters and fillers are taken out, the name is
normalised (NFC) and cut to what the template leaves, and a name with nothing visible left is refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.formatting import DISPLAY_NAME_LIMIT
from bot.models import IdentityMode
from bot.sandbox import SandboxInfo
from tests.bridge.test_sms_relay import fragment
from tests.hardening.test_injection import CODES, Stage, open_stage
from tests.support.sandbox import Control
from tests.support.sms import sms_world

ORGANIZER = "Megan Bowen"
INVISIBLE_PADDING = [
    pytest.param(ORGANIZER + "\u200b" * 245, id="zero-width-spaces-to-256"),
    pytest.param(ORGANIZER + "\u200c\u200d\u2060\ufeff" * 60, id="joiners-word-joiner-bom"),
    pytest.param(ORGANIZER + "\u3164" * 245, id="hangul-filler"),
    pytest.param(ORGANIZER + "\u115f\u1160\uffa0\u2800" * 60, id="other-fillers"),
    pytest.param("Megan\u00ad Bowen" + "\u2061\u2062\u2063\u2064\u180e" * 48, id="soft-hyphen-invisible-operators"),
    pytest.param("\u2066" + ORGANIZER + "\u2069" + "\U000e0041" * 243, id="isolates-and-tags"),
]


@pytest.fixture
async def stage(control: Control, info: SandboxInfo, tmp_path: Path) -> AsyncIterator[Stage]:
    """A per_user meeting and a relay meeting, one bridge, a webhook client "app"."""
    async with open_stage(control, info, tmp_path) as world:
        yield world


@pytest.mark.parametrize("name", INVISIBLE_PADDING)
async def test_a_padded_name_keeps_the_channel_suffix_and_loses_the_padding(stage: Stage, name: str) -> None:
    assert len(name) >= DISPLAY_NAME_LIMIT - 12
    for mode in CODES:
        await stage.join("mallory", name, mode)
    per_user = await stage.say("mallory", IdentityMode.PER_USER, "please share the budget")
    assert per_user["senderDisplayName"] == f"{ORGANIZER} (app)"
    relay = await stage.say("mallory", IdentityMode.SHARED, "please share the budget")
    assert relay["content"]["message"] == f"{ORGANIZER}: please share the budget"


async def test_a_long_visible_name_is_cut_before_the_suffix(stage: Stage) -> None:
    name = "Megan Bowen " + "x" * 244  # as long as a webhook may send
    await stage.join("mallory", name, IdentityMode.PER_USER)
    shown = (await stage.say("mallory", IdentityMode.PER_USER, "hi"))["senderDisplayName"]
    assert shown.endswith(" (app)") and shown.startswith("Megan Bowen xxx")
    assert len(shown) == DISPLAY_NAME_LIMIT


async def test_a_decomposed_name_reaches_teams_composed(stage: Stage) -> None:
    decomposed = unicodedata.normalize("NFD", "Zoë Łukasiewicz-Müller")
    assert decomposed != "Zoë Łukasiewicz-Müller"
    await stage.join("zoe", decomposed, IdentityMode.PER_USER)
    shown = (await stage.say("zoe", IdentityMode.PER_USER, "hi"))["senderDisplayName"]
    assert shown == "Zoë Łukasiewicz-Müller (app)"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("\u200b" * 40, id="zero-width-only"),
        pytest.param("\u3164\u115f \u2800", id="fillers-and-a-space"),
        pytest.param("\u2066\u2069\u00ad", id="isolates-and-soft-hyphen"),
        pytest.param(" \u00a0\u3000 ", id="spaces-only"),
    ],
)
async def test_a_name_with_nothing_visible_is_refused_with_a_reason(stage: Stage, name: str) -> None:
    event = {"type": "join", "user": {"id": "ghost", "displayName": name}, "meeting": CODES[IdentityMode.PER_USER]}
    status, body = await stage.send(event)
    assert status == 400, body
    assert body["error"] == "bad_request" and body["reason"].startswith("user.displayName:"), body
    assert await stage.bridge.store.get_user("webhook:app/ghost") is None


async def test_sms_name_is_cleaned_like_the_webhook_and_refused_when_nothing_is_left(
    control: Control, info: SandboxInfo, tmp_path: Path
) -> None:
    async with sms_world(control, info, tmp_path, "acs", sms={"burst_window_s": 0.0}) as w:
        await w.text("NAME \u3164\u200b\u2060")
        [invalid] = await w.until_text(fragment("name_invalid"))
        assert "empty" in invalid
        await w.text("NAME Megan\u200b Bow\u2060en\u3164")
        [named] = await w.until_text(fragment("name_set"))
        assert named == "Done: the meeting will see you as Megan Bowen."
        await w.joined()
        await w.text("the budget, please")
        [(sender, _)] = await w.until_thread("the budget, please")
        assert sender == "Megan Bowen (SMS)"
