"""The consent ledger: its rules (bot/consent.py: keyed hashes, standing, CSV, the key file) and its rows in the store
(bot/store/consent.py, bot/relay/consent.py): kept across a restart and a forget, pruned by age but never a number's
newest, and what quiet hours read (the last text, a live session)."""

from __future__ import annotations

import csv
import io
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.consent import (
    CSV_COLUMNS,
    ConsentEntry,
    ConsentRecord,
    csv_text,
    load_key,
    number_hash,
    number_tail,
    standing,
)
from bot.models import DeliveryState, Direction
from bot.relay.consent import ConsentLedger
from bot.store import NewDelivery, Store, StoreUrl, store_for
from bot.store.consent import QUIET_HOLD

NUMBER = "+15551234567"
KEY = b"k" * 32
JOIN = ConsentEntry("opt_in", "keyword", "JOIN 123456", "join 123456", "acs", "Incoming_1", "Contoso", "m1", "Sync")
STOP = ConsentEntry("opt_out", "free_text", "stop texting me", "Please stop texting me", "twilio", "SM2", "Contoso")


def record(entry: ConsentEntry, at: datetime | None = None, row_id: int = 1) -> ConsentRecord:
    when = at or datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    return ConsentRecord(row_id, when, number_hash(KEY, NUMBER), number_tail(NUMBER), entry)


def test_a_number_is_kept_as_a_keyed_hash_and_its_last_digits() -> None:
    hashed = number_hash(KEY, NUMBER)
    assert len(hashed) == 64 and NUMBER.lstrip("+") not in hashed
    assert hashed == number_hash(KEY, NUMBER) != number_hash(b"another key of 32 bytes.........", NUMBER)
    assert hashed != number_hash(KEY, "+15551234568")
    assert number_tail(NUMBER) == "4567"


def test_standing_from_the_newest_record() -> None:
    opted_in = standing(record(JOIN), opted_out=False)
    assert opted_in.may_text and "texting JOIN 123456 for Sync on 2026-05-01 12:30 UTC" in opted_in.reason
    opted_out = standing(record(STOP), opted_out=True)
    assert not opted_out.may_text and "writing 'stop texting me'" in opted_out.reason
    assert opted_out.since == datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    # An opt-out the store knows of from before the ledger, and no record at all: no.
    assert not standing(record(JOIN), opted_out=True).may_text
    assert not standing(None, opted_out=True).may_text
    nothing = standing(None, opted_out=False)
    assert not nothing.may_text and "no opt-in on record" in nothing.reason


def test_csv_has_a_header_every_record_and_no_formula() -> None:
    formula = ConsentEntry("opt_out", "free_text", "stop", '=HYPERLINK("x")', "acs", "id", "@Contoso")
    text = csv_text([record(JOIN), record(formula, row_id=2)])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_COLUMNS)
    first = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert first["event"] == "opt_in" and first["numberTail"] == "4567" and first["meetingName"] == "Sync"
    assert first["numberHash"] == number_hash(KEY, NUMBER) and NUMBER not in text
    second = dict(zip(CSV_COLUMNS, rows[2], strict=True))
    assert second["request"] == '\'=HYPERLINK("x")' and second["program"] == "'@Contoso"
    assert second["confirmation"] == ""


def test_the_key_is_created_once_owner_only_and_read_back(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = load_key(None, state)
    path = state / "consent.key"
    assert len(key) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(None, state) == key
    assert load_key("a configured key of enough length", state) == b"a configured key of enough length"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="no usable key"):
        load_key(None, state)


@pytest.fixture
async def store(store_url: StoreUrl) -> AsyncIterator[Store]:
    """A fresh store on each backend in turn (SQLite, and PostgreSQL where it is installed)."""
    opened = await store_for(store_url).open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_records_survive_a_restart_and_a_forget(store: Store, store_url: StoreUrl) -> None:
    ledger = ConsentLedger(store, 1461, key=KEY)
    await store.upsert_user(f"sms:{NUMBER}", "sms", "Guest 4567")
    await ledger.record(NUMBER, JOIN)
    assert await ledger.opted_in(NUMBER)
    await ledger.record(NUMBER, STOP)
    await store.forget_user(f"sms:{NUMBER}")
    await store.close()

    reopened = await store_for(store_url).open()
    try:
        again = ConsentLedger(reopened, 1461, key=KEY)
        rows = await again.records(NUMBER)
        assert [r.entry for r in rows] == [STOP, JOIN]  # newest first
        assert not await again.opted_in(NUMBER)
        verdict = await again.standing(NUMBER)
        assert not verdict.may_text and "opted out" in verdict.reason
        # The same number under another key is a stranger: the key is what finds a number's rows.
        assert await ConsentLedger(reopened, 1461, key=b"x" * 32).records(NUMBER) == []
        found = await reopened.consent_records(number_tail="4567", event="opt_in")
        assert [r.entry for r in found] == [JOIN]
    finally:
        await reopened.close()


async def test_pruning_keeps_each_numbers_newest(store: Store) -> None:
    ledger = ConsentLedger(store, 30, key=KEY)
    other = "+15557654321"
    for entry in (JOIN, STOP, JOIN):
        await ledger.record(NUMBER, entry)
    await ledger.record(other, STOP)
    # Everything is older than the cut: only each number's newest stays.
    assert await store.prune_consent(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert [r.entry for r in await ledger.records(NUMBER)] == [JOIN]
    assert [r.entry for r in await ledger.records(other)] == [STOP]
    # Nothing is past 30 days: the ledger's own prune deletes nothing, and runs once an hour at most.
    await ledger.record(NUMBER, STOP)
    assert await ledger.prune() == 0
    assert len(await ledger.records(NUMBER)) == 2


async def test_a_text_from_the_user_lets_what_quiet_hours_held_go(store: Store) -> None:
    user = f"sms:{NUMBER}"
    await store.upsert_user(user, "sms", "Guest 4567")
    assert await store.sms_conversation(user) == (None, False)
    held = NewDelivery("held-1", Direction.OUTBOUND, "", user, "notice", {"text": "ended"})
    waiting = NewDelivery("retry-1", Direction.OUTBOUND, "", user, "notice", {"text": "other"})
    await store.add_deliveries([held, waiting])
    later = datetime.now(UTC) + timedelta(hours=9)
    await store.finish(["held-1"], DeliveryState.PENDING, error=f"{QUIET_HOLD} until 08:00", next_attempt_at=later)
    await store.finish(["retry-1"], DeliveryState.PENDING, error="503 from the provider", next_attempt_at=later)

    assert await store.note_text(user) == 1
    last, in_meeting = await store.sms_conversation(user)
    assert last is not None and datetime.now(UTC) - last < timedelta(minutes=1) and not in_meeting
    rows = {d.id: d for d in await store.deliveries(user_id=user)}
    assert rows["held-1"].next_attempt_at is not None and rows["held-1"].next_attempt_at < later
    assert rows["retry-1"].next_attempt_at == later  # a provider's retry keeps its own time
