"""calls.browser settings, which SDK module the pages load, and what a re-joined session is told (all pure)."""

from __future__ import annotations

import pytest

from bot.calls.browser import STANDIN_PATH, sdk_url
from bot.config import BrowserSection, load_settings
from bot.errors import ConfigError
from bot.models import SessionState as S
from bot.sessions import notice, rejoin_notice


def test_browser_is_a_connector_with_defaults_from_the_reference() -> None:
    settings = load_settings(None, environ={"BRIDGE__CALLS__CONNECTOR": "browser"})
    assert settings.calls.connector == "browser"
    browser = settings.calls.browser
    assert (browser.chromium, browser.sdk, browser.legs_per_page, browser.max_legs) == (
        "/usr/bin/chromium",
        "auto",
        10,
        100,
    )


def test_browser_settings_come_from_the_environment_too() -> None:
    env = {"BRIDGE__CALLS__BROWSER__MAX_LEGS": "7", "BRIDGE__CALLS__BROWSER__SDK": "https://cdn.test/calling.js"}
    browser = load_settings(None, environ=env).calls.browser
    assert browser.max_legs == 7 and browser.sdk == "https://cdn.test/calling.js"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SDK", "ftp://x.test/a.js"),
        ("SDK", "bundled"),
        ("LEGS_PER_PAGE", "0"),
        ("MAX_LEGS", "0"),
        ("JOIN_TIMEOUT_S", "0"),
    ],
)
def test_a_bad_browser_setting_names_its_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"calls.browser.{key.lower()}"):
        load_settings(None, environ={f"BRIDGE__CALLS__BROWSER__{key}": value})


def test_auto_loads_the_sandboxs_stand_in_on_the_sandbox_and_the_real_bundle_elsewhere() -> None:
    auto = BrowserSection()
    assert sdk_url(auto, "https://127.0.0.1:8443/") == "https://127.0.0.1:8443" + STANDIN_PATH
    assert sdk_url(auto, None) is None
    assert sdk_url(BrowserSection(sdk="real"), "https://127.0.0.1:8443/") is None
    assert sdk_url(BrowserSection(sdk="https://cdn.test/c.js"), None) == "https://cdn.test/c.js"


def test_a_session_back_in_the_call_hears_of_the_gap_once_and_nothing_else() -> None:
    back = rejoin_notice(S.IN_CALL, "Weekly sync", was_in_call=True)
    assert back is not None and back.startswith("You're back in the meeting chat of Weekly sync.")
    assert "may be missing" in back
    assert back != notice(S.IN_CALL, "Weekly sync")


def test_a_session_that_only_waited_in_the_lobby_is_not_told_it_waits_again() -> None:
    assert rejoin_notice(S.LOBBY, "Weekly sync", was_in_call=False) is None
    assert rejoin_notice(S.IN_CALL, "Weekly sync", was_in_call=False) == notice(S.IN_CALL, "Weekly sync")


def test_a_session_dropped_from_the_call_into_the_lobby_is_told_it_waits() -> None:
    assert rejoin_notice(S.LOBBY, "Weekly sync", was_in_call=True) == notice(S.LOBBY, "Weekly sync")
