"""The crash and fault soak (bench/soak.py) inside the suite: a short run in every `make test`, the CI-sized one
behind the slow mark. The bridge and the sandbox run as their own processes; the bridge is SIGKILLed and
restarted while the sandbox injects faults, and nothing acknowledged may be lost, doubled or reordered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.soak import SoakOptions, run_soak
from bench.soak_check import check_recipient, check_thread, tokens
from bench.soak_report import table


def _assert_clean(result: dict[str, Any]) -> None:
    report = table(result)
    print(report)
    assert result["ok"], report
    for key in ("inbound", "outboundTeams", "outboundRelayed"):
        tally = result[key]
        assert isinstance(tally, dict)
        assert tally["expected"] > 0 and tally["arrived"] == tally["expected"], report


async def test_short_soak(tmp_path: Path) -> None:
    """150 messages from 15 users in 5 meetings, three kills, every fault kind: about a minute on two cores."""
    options = SoakOptions(
        messages=150,
        kills=3,
        duration_s=30.0,
        meetings=5,
        webhook_per_meeting=2,
        sms_per_meeting=1,
        drain_timeout_s=90.0,
        seed=11,
        state_dir=tmp_path,
    )
    result = await run_soak(options)
    _assert_clean(result)
    assert len(result["kills"]) == 3
    assert sum(result["faults"].values()) > 0


@pytest.mark.slow
async def test_ci_soak(tmp_path: Path) -> None:
    """The CI default: 1,000 messages, five kills (`make soak` runs the same)."""
    result = await run_soak(SoakOptions(state_dir=tmp_path))
    _assert_clean(result)


@pytest.mark.slow
async def test_ci_soak_on_chat_events_some_lost_some_repeated(tmp_path: Path) -> None:
    """The same with meetings read on Event Grid chat events (`make soak SOAK_ARGS=--chat-events`)."""
    result = await run_soak(SoakOptions(state_dir=tmp_path, chat_events=True))
    _assert_clean(result)
    chat = result["eventGrid"]["chat"]
    assert chat["lost"] > 0 and chat["duplicated"] > 0, chat


def test_the_counting_finds_what_it_should() -> None:
    """The checker itself: a lost, a doubled and a reordered token are each seen, merged messages are not."""
    assert tokens("[u001#00002] hi\n[u001#00003] yo") == [("u001", 2), ("u001", 3)]
    clean = check_thread(
        "m", ["<p>[u001#00001] a<br>[u001#00002] b</p>", "[u002#00001] c"], {"u001": [1, 2], "u002": [1]}
    )
    assert clean.clean and clean.arrived == 3
    bad = check_thread("m", ["[u001#00002]", "[u001#00001]", "[u001#00002]"], {"u001": [1, 2, 3]})
    assert (bad.lost, bad.duplicated, bad.out_of_order) == (1, 1, 1)
    expected = [("t000", 1), ("u001", 1), ("t000", 2)]
    ok = check_recipient("u002", ["Megan: [t000#00001] hi\nAnn: [u001#00001] yo", "[t000#00002]"], expected, "u002")
    assert ok.clean and ok.arrived == 3
    teams = [("t000", 1), ("t000", 2), ("t000", 3)]
    wrong = check_recipient("u001", ["[t000#00002]", "[t000#00001]", "[t000#00001]", "[u001#00001]"], teams, "u001")
    assert (wrong.lost, wrong.duplicated, wrong.out_of_order, wrong.unexpected) == (1, 1, 1, 1)
