"""The consent ledger's rules: a number's keyed hash, its standing from its records, the audit's CSV, the key's file.

A ledger row never holds the number: an HMAC-SHA256 of its E.164 form under a key of the bridge's own (so the
hashes of a leaked store cannot be reversed by hashing every possible number) and its last four digits (so an
auditor can narrow a search by eye). Given a number, the same key finds its rows.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

Event = Literal["opt_in", "opt_out"]
Method = Literal["keyword", "free_text"]
EVENTS: tuple[Event, ...] = ("opt_in", "opt_out")
TAIL_DIGITS = 4
REQUEST_MAX = 160
"""Characters of the number's own text kept as the evidence of what it asked for."""
KEY_FILE = "consent.key"
KEY_MIN_CHARS = 16


@dataclass(frozen=True)
class ConsentEntry:
    """What happened, as the SMS wing records it (the ledger adds the number's hash and tail, and the time)."""

    event: Event
    method: Method
    matched: str
    """JOIN, START, the STOP keyword texted, or the opt-out phrase a free text matched."""
    request: str
    """The number's text that did it, cut to REQUEST_MAX characters."""
    gateway: str
    provider_id: str | None
    program: str
    meeting_id: str | None = None
    meeting_name: str | None = None
    confirmation: str | None = None
    """The exact text the bridge sent in answer; None when the provider sends its own STOP reply."""
    confirmation_id: str | None = None
    """The outbox delivery that carried the confirmation (its outcome is there while the store keeps it)."""


@dataclass(frozen=True)
class ConsentRecord:
    id: int
    at: datetime
    number_hash: str
    number_tail: str
    entry: ConsentEntry


@dataclass(frozen=True)
class Standing:
    """May the bridge start texting this number (beyond answering its texts), and why."""

    may_text: bool
    reason: str
    since: datetime | None


def number_hash(key: bytes, number: str) -> str:
    return hmac.new(key, number.encode("utf-8"), hashlib.sha256).hexdigest()


def number_tail(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())[-TAIL_DIGITS:]


def _how(record: ConsentRecord) -> str:
    entry = record.entry
    how = f"texting {entry.matched}" if entry.method == "keyword" else f"writing {entry.matched!r}"
    where = f" for {entry.meeting_name}" if entry.meeting_name else ""
    return f"{how}{where} on {record.at:%Y-%m-%d %H:%M} UTC"


def standing(latest: ConsentRecord | None, opted_out: bool) -> Standing:
    """The verdict from a number's newest ledger row and the opt-out flag the bridge sends by."""
    if latest is not None and latest.entry.event == "opt_out":
        return Standing(False, f"opted out by {_how(latest)}", latest.at)
    if opted_out:
        return Standing(False, "opted out (before the ledger kept records of it)", None)
    if latest is not None:
        return Standing(True, f"opted in by {_how(latest)}", latest.at)
    return Standing(False, "no opt-in on record: the bridge only answers this number's own texts", None)


CSV_COLUMNS = (
    "id",
    "at",
    "event",
    "method",
    "matched",
    "numberTail",
    "numberHash",
    "gateway",
    "providerId",
    "meetingId",
    "meetingName",
    "program",
    "request",
    "confirmation",
    "confirmationId",
)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell that starts like a formula: what a phone texted must stay text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(records: Iterable[ConsentRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        e = r.entry
        row: list[object] = [r.id, r.at.isoformat(), e.event, e.method, e.matched, r.number_tail, r.number_hash]
        row += [e.gateway, e.provider_id, e.meeting_id, e.meeting_name, e.program, e.request, e.confirmation]
        writer.writerow([_cell(v) for v in [*row, e.confirmation_id]])
    return out.getvalue()


def load_key(configured: str | None, state_dir: Path) -> bytes:
    """The configured key, else the one in state_dir/consent.key, created (owner-only) on first use. Losing it
    loses the way from a number to its rows: keep it with the store's backups, not inside them."""
    if configured is not None:
        return configured.encode("utf-8")
    path = state_dir / KEY_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text(encoding="ascii").strip()
        if len(text) < KEY_MIN_CHARS:
            raise ValueError(f"{path} holds no usable key (fewer than {KEY_MIN_CHARS} characters)") from None
        return text.encode("ascii")
    with os.fdopen(fd, "w", encoding="ascii") as file:
        key = secrets.token_hex(32)
        file.write(key + "\n")
    return key.encode("ascii")
