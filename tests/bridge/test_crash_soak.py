"""The crash and fault soak (bench/soak.py) inside the suite: a short run in every `make test` (and a short one with
the browser connector), the CI-sized one behind the slow mark. The bridge and the sandbox run as their own
processes; the bridge is SIGKILLed and restarted while the sandbox injects faults, and nothing acknowledged may be
lost, doubled or reordered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.soak import SoakOptions, run_soak
from bench.soak_check import check_recipient, check_thread, tokens
from bench.soak_gaps import away_spans, excusable, leg_gaps
from bench.soak_report import table
from tests.support.browser_bridge import needs_chromium


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


async def test_short_browser_soak(tmp_path: Path) -> None:
    """Every call leg in the bridge's headless Chromium, which each SIGKILL takes down with the bridge: 90 messages
    from 9 users in 3 meetings, two kills, every fault kind; about 40 s on two cores. Inbound nothing may be lost or
    doubled; outbound what a re-join explains is counted apart, and the legs' gaps are measured."""
    needs_chromium()
    options = SoakOptions(
        messages=90,
        kills=2,
        duration_s=20.0,
        meetings=3,
        drain_timeout_s=90.0,
        seed=12,
        state_dir=tmp_path,
        connector="browser",
    )
    result = await run_soak(options)
    report = table(result)
    print(report)
    assert result["ok"], report
    inbound = result["inbound"]
    assert inbound["expected"] > 0 and inbound["arrived"] == inbound["expected"] and not inbound["excused"], report
    for key in ("outboundTeams", "outboundRelayed"):
        tally = result[key]
        assert tally["arrived"] > 0 and tally["arrived"] + tally["excused"] == tally["expected"], report
    assert len(result["kills"]) == 2
    assert result["legGaps"]["gaps"] >= 1, report  # a crash takes the meetings' legs out of their chats


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


def test_the_gap_counting_finds_what_it_should() -> None:
    """The leg-gap view: a span with no bridge leg in the chat is found from the thread, and only a message the
    reader never handed to a user, posted while that user was away, is excused."""

    def system(kind: str, seq: int, at: str, *raw: str) -> dict[str, object]:
        people = [{"communicationIdentifier": {"rawId": r}} for r in raw]
        return {
            "type": kind,
            "sequenceId": str(seq),
            "createdOn": f"2026-01-01T00:00:{at}+00:00",
            "content": {"participants": people},
        }

    thread = [
        system("participantAdded", 1, "00", "8:orgid:megan"),
        system("participantAdded", 2, "01", "8:acs:a", "8:acs:b"),
        system("participantRemoved", 3, "10", "8:acs:a"),
        system("participantRemoved", 4, "11", "8:acs:b"),
        system("participantAdded", 5, "15", "8:acs:b"),
    ]
    base = 1767225600.0  # 2026-01-01T00:00:00Z
    assert leg_gaps(thread, base + 60) == [(base + 11, base + 15)]
    assert leg_gaps(thread[:4], base + 60) == [(base + 11, base + 60)]  # still open at the end
    events = [("joining", base + 0.5), ("in_call", base + 1.0), ("joining", base + 12.0), ("in_call", base + 16.0)]
    away = away_spans(events, [base + 10.5], base + 60)
    times = {("t000", 1): base + 13.0, ("t000", 2): base + 30.0, ("t000", 3): base + 14.0}
    missing = list(times)
    # t000#1: handed to someone else while this user was away: excused. #2: long after: lost. #3: handed to this
    # user and not delivered: lost.
    got = excusable(missing, times, {("t000", 3)}, {("t000", 1), ("t000", 3)}, away, away)
    assert got == {("t000", 1)}
