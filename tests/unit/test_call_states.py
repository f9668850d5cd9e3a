"""The Calling SDK's call states and end codes as the browser connector reads them (bot/calls/states.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.calls.states import (
    CALL_STATES,
    END_CODES,
    FINAL_STATE,
    Verdict,
    call_state,
    connection_lost,
    end_reason,
    join_error,
)

V = Verdict


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        ("None", V.JOINING),
        ("Connecting", V.JOINING),
        ("Ringing", V.JOINING),
        ("EarlyMedia", V.JOINING),
        ("InLobby", V.LOBBY),
        ("Connected", V.CONNECTED),
        ("LocalHold", V.CONNECTED),
        ("RemoteHold", V.CONNECTED),
    ],
)
def test_every_call_state_before_the_end_has_its_verdict(state: str, verdict: Verdict) -> None:
    assert call_state(state) == verdict


@pytest.mark.parametrize("state", ["Disconnecting", "Disconnected", "Transferring", "", None, 3])
def test_a_state_the_table_does_not_name_changes_nothing(state: object) -> None:
    # Disconnected is read from callEndReason instead; a state a newer SDK adds must not end a leg.
    assert call_state(state) is None


@pytest.mark.parametrize(
    ("code", "sub", "verdict"),
    [
        (0, 0, V.LEFT),
        (0, 4097, V.ENDED),
        (0, 5000, V.REMOVED),
        (0, 5300, V.REMOVED),
        (0, 4521, V.DROPPED),
        (0, 7000, V.DROPPED),
        (410, 301005, V.DROPPED),
        (410, 3100, V.DROPPED),
        (410, 3101, V.DROPPED),
        (410, 3112, V.DROPPED),
        (410, None, V.DROPPED),
        (490, 4525, V.DROPPED),
        (490, 1, V.DROPPED),
        (495, 4507, V.NEW_TOKEN),
        (403, 5221, V.FAILED),
        (403, 5222, V.FAILED),
        (200, 5855, V.FAILED),
    ],
)
def test_the_end_codes_of_the_table(code: int, sub: int | None, verdict: Verdict) -> None:
    assert end_reason(code, sub).verdict == verdict


def test_our_own_hang_up_carries_no_reason_and_a_drop_names_its_code() -> None:
    assert end_reason(0, 0).reason is None
    assert end_reason(410, 3112).reason == "media or network connectivity was lost (410/3112)"
    assert end_reason(490, None).reason == "a network error cut the call (490/-)"


def test_interop_refusals_tell_operators_what_to_change() -> None:
    for sub in (5221, 5222):
        reason = end_reason(403, sub).reason
        assert reason is not None and f"403/{sub}" in reason and "operator" in reason and "Teams" in reason


@pytest.mark.parametrize(("code", "sub"), [(487, 0), (0, 1), (403, 5220), (500, 5000), (495, 4506), (0, None)])
def test_an_unknown_end_code_fails_the_leg_with_both_numbers(code: int, sub: int | None) -> None:
    outcome = end_reason(code, sub)
    assert outcome.verdict == V.FAILED
    assert (
        outcome.reason
        == f"the call ended with code {code}/{'-' if sub is None else sub}, which the bridge does not know"
    )


@pytest.mark.parametrize("code", [None, "0", True, 1.5])
def test_an_end_without_a_numeric_code_fails(code: object) -> None:
    assert end_reason(code, 0).verdict == V.FAILED


def test_a_lost_agent_connection_drops_its_leg_and_a_refused_token_asks_for_a_new_one() -> None:
    assert connection_lost("connectionIssue").verdict == V.DROPPED
    assert connection_lost(None).verdict == V.DROPPED
    assert connection_lost("invalidToken").verdict == V.NEW_TOKEN


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (401, V.NEW_TOKEN),
        (403, V.FAILED),
        (404, V.FAILED),
        (400, V.FAILED),
        (408, V.DROPPED),
        (409, V.DROPPED),
        (429, V.DROPPED),
        (500, V.DROPPED),
        (None, V.DROPPED),
    ],
)
def test_an_error_before_the_call_existed(code: int | None, verdict: Verdict) -> None:
    outcome = join_error(code, 40101, "Failed to create CallAgent")
    assert outcome.verdict == verdict
    assert outcome.reason is not None
    if code is not None:
        assert f"({code}/40101)" in outcome.reason
    if verdict != V.NEW_TOKEN:
        assert "Failed to create CallAgent" in outcome.reason


def test_the_table_covers_the_sdk_states_it_names() -> None:
    sdk_states = {
        "None",
        "Connecting",
        "Ringing",
        "Connected",
        "LocalHold",
        "RemoteHold",
        "InLobby",
        "Disconnecting",
        "Disconnected",
        "EarlyMedia",
    }
    assert set(CALL_STATES) == sdk_states - {"Disconnecting", "Disconnected"}


def test_readme_shows_the_same_end_code_table() -> None:
    """README's table of end codes says what the code does, row by row (the `any` rows for one example subCode)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ((?:\d+/(?:\d+|any)(?:, )?)+) \| (\w+) \|", readme, re.M)
    assert len(rows) >= 8, rows
    seen = set()
    for codes, leg in rows:
        for pair in codes.split(", "):
            code, sub = pair.split("/")
            outcome = end_reason(int(code), 12345 if sub == "any" else int(sub))
            assert FINAL_STATE[outcome.verdict].value == leg, (pair, leg, outcome)
            seen.add((int(code), None if sub == "any" else int(sub)))
    assert seen == set(END_CODES)
