"""The benchmark suite's plumbing on the tiniest size of one scenario: the JSON's shape and that figures are numbers.

Nothing here looks at what the figures are: benchmarks report, tests do not assert timings.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import scenario_inbound_latency, suite
from bench.scenario import problems


def test_the_suite_runs_a_scenario_and_writes_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(scenario_inbound_latency.SIZES, "quick", scenario_inbound_latency.SIZES["tiny"])
    output = tmp_path / "bench-results.json"
    assert suite.main(["--quick", "--only", "inbound_latency", "--output", str(output)]) == 0

    report = json.loads(output.read_text())
    assert {"cpus", "python", "platform", "date"} <= set(report["machine"])
    assert report["quick"] is True
    [result] = report["scenarios"]
    assert result["status"] == "ok", result.get("notes")
    assert result["scenario"] == "inbound_latency"
    assert problems(result) == []
    assert result["figures"] and all(isinstance(v, int | float) for v in result["figures"].values())
    assert {row["figure"] for row in result["targets"]} <= set(result["figures"])
    table = capsys.readouterr().out
    assert "| scenario" in table and "inbound_latency" in table


def test_a_scenario_that_is_not_there_yet_is_reported_not_available(tmp_path: Path) -> None:
    result = asyncio.run(suite.run_one("not_written_yet", True, tmp_path))
    assert result["status"] == "not available"


def test_a_result_of_the_wrong_shape_is_named() -> None:
    assert problems({"scenario": "x", "figures": {"a": "fast"}, "targets": [], "baseline": None, "notes": ""}) == [
        "figure a is not a number"
    ]
