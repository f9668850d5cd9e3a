"""Admin API, the consent ledger: its records by filter (JSON, or CSV for an audit), and where a number stands."""

from __future__ import annotations

import re
from typing import Any, cast

from aiohttp import web

from ..config import SETTINGS
from ..consent import EVENTS, TAIL_DIGITS, ConsentRecord, Event, csv_text, number_tail
from ..phones import InvalidNumber, mask, normalize
from ..quiet_hours import quiet_until, zones_for
from ..relay.consent import CONSENT
from ..store import STORE, utcnow
from .common import ApiError, iso, parse_int, parse_time, read_object
from .schemas import NUMBER_PATTERN

FILTERS = ("event", "meeting", "digits", "hash", "since", "until", "limit", "format")
DEFAULT_LIMIT, MAX_LIMIT = 1000, 100_000
CHECK_RECORDS = 100
_HASH = re.compile(r"^[0-9a-f]{64}$")
_DIGITS = re.compile(rf"^[0-9]{{{TAIL_DIGITS}}}$")


def consent_view(record: ConsentRecord) -> dict[str, Any]:
    entry = record.entry
    return {
        "id": record.id,
        "at": iso(record.at),
        "event": entry.event,
        "method": entry.method,
        "matched": entry.matched,
        "request": entry.request,
        "numberTail": record.number_tail,
        "numberHash": record.number_hash,
        "gateway": entry.gateway,
        "providerId": entry.provider_id,
        "program": entry.program,
        "meetingId": entry.meeting_id,
        "meetingName": entry.meeting_name,
        "confirmation": entry.confirmation,
        "confirmationId": entry.confirmation_id,
    }


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ApiError(400, f"{name}: {value[:40]!r} is not one of {', '.join(allowed)}")
    return value


async def list_consent(request: web.Request) -> web.Response:
    """Newest first. No raw number in the URL: `digits` (its last four) and `hash` (from a check) find a number."""
    store, query = request.app[STORE], request.query
    unknown = sorted(set(query) - set(FILTERS))
    if unknown:
        raise ApiError(400, f"{unknown[0][:40]}: not a filter of consent records")
    if "digits" in query and not _DIGITS.fullmatch(query["digits"]):
        raise ApiError(400, f"digits: the number's last {TAIL_DIGITS} digits")
    if "hash" in query and not _HASH.fullmatch(query["hash"]):
        raise ApiError(400, "hash: a number's hash as a record or a check gives it (64 hex digits)")
    meeting_id = None
    if query.get("meeting"):
        ref = query["meeting"]
        # A removed meeting's records keep its id: an id no meeting has any more is still a filter.
        found = await store.get_meeting(ref) or (await store.meeting_by_code(ref) if ref.isdigit() else None)
        meeting_id = found.id if found is not None else ref
    records = await store.consent_records(
        number_hash=query.get("hash"),
        number_tail=query.get("digits"),
        event=cast(Event, _choice("event", query["event"], EVENTS)) if "event" in query else None,
        meeting_id=meeting_id,
        since=parse_time("since", query["since"]) if "since" in query else None,
        until=parse_time("until", query["until"]) if "until" in query else None,
        limit=parse_int("limit", query["limit"], 1, MAX_LIMIT) if "limit" in query else DEFAULT_LIMIT,
    )
    if _choice("format", query.get("format", "json"), ("json", "csv")) == "csv":
        return web.Response(
            text=csv_text(records),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": 'attachment; filename="consent.csv"'},
        )
    return web.json_response({"records": [consent_view(r) for r in records]})


async def check_consent(request: web.Request) -> web.Response:
    """POST {"number": "+1..."}: may the bridge start texting it, and why. A POST so the number stays out of URLs."""
    body = await read_object(request)
    unknown = sorted(set(body) - {"number"})
    if unknown:
        raise ApiError(400, f"{unknown[0][:40]}: not a field of a consent check", field=unknown[0][:40])
    raw = body.get("number")
    if not isinstance(raw, str) or not re.fullmatch(NUMBER_PATTERN, raw):
        raise ApiError(400, "number: required, a phone number in E.164 (+15551234567)", field="number")
    try:
        number = normalize(raw, strict=False)
    except InvalidNumber as exc:
        raise ApiError(400, f"number: {exc}", field="number") from exc
    app = request.app
    ledger, sms = app[CONSENT], app[SETTINGS].sms
    verdict = await ledger.standing(number)
    user = await app[STORE].get_user(f"sms:{number}")
    zones = zones_for(number, sms.quiet_hours_zone)
    quiet = quiet_until(utcnow(), sms.quiet_window, zones)
    answer = {
        "number": mask(number),
        "numberTail": number_tail(number),
        "numberHash": ledger.hash(number),
        "mayText": verdict.may_text,
        "reason": verdict.reason,
        "since": iso(verdict.since),
        "optedOut": user.opted_out if user is not None else None,
        "blocked": user.blocked if user is not None else None,
        "timeZones": [str(z) for z in zones],
        "quietUntil": iso(quiet),
        "records": [consent_view(r) for r in await ledger.records(number, CHECK_RECORDS)],
    }
    return web.json_response(answer)
