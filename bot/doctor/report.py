"""The doctor's findings: one step each (passed, failed with the fix, or skipped), as lines or as JSON (pure)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["pass", "fail", "skip"]
MARKS: dict[Status, str] = {"pass": "\u2713", "fail": "\u2717", "skip": "-"}


@dataclass(frozen=True)
class Step:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    """What to do about a failure, in the operator's words."""


def passed(name: str, detail: str) -> Step:
    return Step(name, "pass", detail)


def failed(name: str, detail: str, fix: str) -> Step:
    return Step(name, "fail", detail, fix)


def skipped(name: str, detail: str) -> Step:
    return Step(name, "skip", detail)


def _clean(text: str) -> str:
    # Errors from services may span lines; each step is one line of a terminal. azure-core repeats an error's code
    # and message after its first line ("...\nCode: Unauthorized\nMessage: ..."): once is enough.
    return " ".join(text.partition("\nCode: ")[0].split())


def line(step: Step) -> str:
    text = f"{MARKS[step.status]} {step.name}: {_clean(step.detail)}"
    return f"{text} Fix: {_clean(step.fix)}" if step.fix else text


def lines(steps: list[Step]) -> list[str]:
    """One line per step, then the verdict."""
    failures = sum(s.status == "fail" for s in steps)
    verdict = "all checks passed" if not failures else f"{failures} of {len(steps)} checks failed"
    return [*(line(s) for s in steps), verdict]


def as_json(steps: list[Step]) -> str:
    body = {"ok": ok(steps), "steps": [{k: v for k, v in asdict(s).items() if v is not None} for s in steps]}
    return json.dumps(body, indent=2, ensure_ascii=False)


def ok(steps: list[Step]) -> bool:
    return not any(s.status == "fail" for s in steps)
