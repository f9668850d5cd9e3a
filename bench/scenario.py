"""The contract between the benchmark suite (bench/suite.py) and its scenarios, and the helpers they share.

A scenario is a module `bench/scenario_<name>.py`, listed by name in `bench.suite.SCENARIOS`, exposing:

    NAME: str
    async def run(quick: bool, workdir: Path) -> dict[str, Any]

`run` starts and stops its own sandbox and bridge processes (bench/processes.py), may keep files in `workdir`
(a fresh folder of its own), and returns a `Result`:

    {"scenario": NAME,
     "figures": {"<figure>": <number or null>, ...},          # everything measured, plain numbers
     "targets": [{"figure": "<a key of figures>", "target": "≤ 50 ms", "measured": <number or null>,
                  "met": <bool>, "baseline": <number, optional>}, ...],
     "baseline": {"<figure>": <number>, ...} | None,           # the same-run baseline the targets compare with
     "notes": "<how it was measured; why a target is missed>"}

`quick` asks for sizes that let the whole `make bench-quick` finish in under three minutes; the figures are then
rougher, never differently defined. A target is never lowered to be met: a miss is reported with its reason in
`notes`. The optional per-target "baseline" is what the table's baseline column shows for that row (else the
scenario's `baseline[figure]`, when present). The suite adds "status" and "seconds" to each result it writes.

These are benchmarks, not tests: nothing asserts their figures. This contract is shared by every scenario;
change it here, in one place, and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

Number = int | float


class Target(TypedDict):
    figure: str
    target: str
    measured: Number | None
    met: bool
    baseline: NotRequired[Number | None]


class Result(TypedDict):
    scenario: str
    figures: dict[str, Number | None]
    targets: list[Target]
    baseline: dict[str, Number | None] | None
    notes: str


def target(figure: str, text: str, measured: Number | None, met: bool, baseline: Number | None = None) -> Target:
    """One target row; `met` is False whenever nothing was measured."""
    row: Target = {"figure": figure, "target": text, "measured": measured, "met": bool(met and measured is not None)}
    if baseline is not None:
        row["baseline"] = baseline
    return row


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by the nearest-rank method: a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def problems(result: Any) -> list[str]:
    """What is wrong with a scenario's result's shape (empty when it keeps the contract)."""
    if not isinstance(result, dict):
        return [f"the result is a {type(result).__name__}, not a dict"]
    found: list[str] = []
    for key, kind in (("scenario", str), ("figures", dict), ("targets", list), ("notes", str)):
        if not isinstance(result.get(key), kind):
            found.append(f"{key} must be a {kind.__name__}")
    if "baseline" not in result or not isinstance(result["baseline"], dict | None):
        found.append("baseline must be a dict or None")
    for name, value in (result.get("figures") or {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            found.append(f"figure {name} is not a number")
    for row in result.get("targets") or []:
        if not isinstance(row, dict) or not {"figure", "target", "measured", "met"} <= set(row):
            found.append(f"target {row!r} lacks figure, target, measured or met")
        elif not isinstance(row["met"], bool):
            found.append(f"target {row['figure']}: met must be true or false")
    return found


def run_alone(run: Callable[[bool, Path], Coroutine[Any, Any, Any]], description: str | None, quick_help: str) -> None:
    """`python -m bench.scenario_<name> [--quick]`: one scenario without the suite, its result printed as JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        print(json.dumps(asyncio.run(run(args.quick, Path(tmp))), indent=2, ensure_ascii=False))
