"""The benchmark suite: runs each scenario in turn, writes bench-results.json and prints the table.

    python -m bench.suite [--quick] [--only NAME ...] [--output bench-results.json] [--keep]

Scenarios are the modules bench/scenario_<name>.py named in SCENARIOS (their contract: bench/scenario.py),
imported only when run, so a scenario that is not there yet is reported "not available" instead of stopping the
suite. Each starts and stops its own sandbox and bridge processes. These are benchmarks: they report, nothing
here fails on a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from .scenario import problems

SCENARIOS = [
    "inbound_throughput",
    "inbound_latency",
    "outbound_latency",
    "fanout",
    "scale",
    "throttled_meeting",
    "joiner",
    "postgres_store",
]


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def load(name: str) -> ModuleType | None:
    """The scenario's module, or None when it does not exist (yet); its own import errors still surface."""
    module = f"bench.scenario_{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


async def run_one(name: str, quick: bool, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    module = load(name)
    if module is None:
        return {"scenario": name, "status": "not available", "notes": f"bench/scenario_{name}.py is not there yet"}
    workdir.mkdir(parents=True, exist_ok=True)
    # This process plays the clients and timestamps their answers: its own full collections (the Azure SDK's
    # classes are many) must not show up as the bridge's latency.
    gc.collect()
    gc.freeze()
    try:
        result: Any = await module.run(quick, workdir)
    except Exception as exc:  # one scenario failing must not lose the others' figures
        traceback.print_exc()
        return {
            "scenario": getattr(module, "NAME", name),
            "status": "error",
            "notes": f"{type(exc).__name__}: {exc}",
            "seconds": round(time.perf_counter() - started, 1),
        }
    found = problems(result)
    out = dict(result) if isinstance(result, dict) else {"scenario": name}
    out["status"] = "error" if found else "ok"
    if found:
        out["notes"] = f"{out.get('notes', '')} (result shape: {'; '.join(found)})".strip()
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


async def run_suite(names: Sequence[str], quick: bool, root: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "quick": quick, "scenarios": []}
    started = time.perf_counter()
    for name in names:
        print(f"--- {name} ({'quick' if quick else 'full'})", flush=True)
        result = await run_one(name, quick, root / name)
        print(f"    {result['status']} in {result.get('seconds', 0)} s", flush=True)
        report["scenarios"].append(result)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)


def rows(report: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    for result in report["scenarios"]:
        name = result["scenario"]
        if result["status"] != "ok" and not result.get("targets"):
            out.append([name, "", "", "", "", result["status"]])
            continue
        baseline = result.get("baseline") or {}
        for row in result.get("targets", []):
            base = row.get("baseline", baseline.get(row["figure"]))
            out.append([name, row["figure"], show(row["measured"]), row["target"], show(base), show(row["met"])])
    return out


def table(report: dict[str, Any]) -> str:
    """A Markdown table (it goes into README's Performance section as it is)."""
    header = ["scenario", "figure", "measured", "target", "baseline", "met"]
    body = rows(report)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole suite in under 3 minutes")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--keep", action="store_true", help="keep the processes' state folders and logs")
    args = parser.parse_args(argv)
    names = [n for n in SCENARIOS if n in args.only] if args.only else SCENARIOS
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        report = asyncio.run(run_suite(names, args.quick, root))
    finally:
        if args.keep:
            print(f"state folders and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    m = report["machine"]
    print()
    print(table(report))
    print()
    print(
        f"{m['cpus']} cores, Python {m['python']}, {m['date'][:10]}; load average {m['load_average_at_start'][0]} "
        f"at start, {m['load_average_at_end'][0]} at end; {report['seconds']} s; written to {args.output}"
    )
    for result in report["scenarios"]:
        if result.get("notes"):
            print(f"- {result['scenario']}: {result['notes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
