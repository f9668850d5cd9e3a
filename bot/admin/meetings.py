"""Admin API, meetings: list, get, add from a join link or Graph id, change policy or pause, remove."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import MeetingConfig
from ..errors import PermanentError, TransientError
from ..formatting import validate_template
from ..meetings import REGISTRY
from ..models import DeliveryState, Direction, IdentityMode, Meeting
from ..relay.runtime import RELAY
from ..sessions import ACTIVE
from ..store import STORE, Store, StoreConflictError
from .common import ApiError, camel, not_found, read_object, validation_error
from .schemas import NAME_REFUSED_CHARACTERS
from .views import meeting_view

CREATE_FIELDS: tuple[str, ...] = ("link", "graph_meeting_id", "organizer_id", "code", "name", "identity_mode")
CREATE_FIELDS += ("display_name_template", "allow", "sms_segment_cap")
PATCH_FIELDS = ("paused", "allow", "identity_mode", "display_name_template", "name", "sms_segment_cap")
NAMES = {name: camel(name) for name in (*CREATE_FIELDS, *PATCH_FIELDS)}
log = logging.getLogger(__name__)
NOTICE_GRACE_S = 5.0
"""How long removing a meeting waits for its users' "you left" notices: once it is gone they cannot be sent."""

Pattern = Annotated[str, Field(min_length=1, max_length=256)]
NAME_REFUSED = re.compile(f"[{NAME_REFUSED_CHARACTERS}\ud800-\udfff]")  # and lone surrogates, which JSON can carry


class MeetingPatch(BaseModel):
    """A PATCH body: only the fields given change; smsSegmentCap null goes back to the SMS default."""

    model_config = ConfigDict(extra="forbid", alias_generator=camel)
    paused: bool = False
    allow: list[Pattern] = Field(default_factory=list, max_length=1000)
    identity_mode: IdentityMode = IdentityMode.PER_USER
    display_name_template: str = ""
    name: str = Field("", min_length=1, max_length=200)
    sms_segment_cap: int | None = Field(None, ge=1, le=10)

    @field_validator("display_name_template")
    @classmethod
    def _template(cls, value: str) -> str:
        validate_template(value)
        return value

    @field_validator("name")
    @classmethod
    def _visible(cls, value: str) -> str:
        return one_line(value)


def one_line(name: str) -> str:
    """Names reach SMS and Teams in notices: one line of visible text. Refused are controls (line breaks among them),
    line and paragraph separators, and bidi overrides that would show it reversed. Emoji sequences (joined by
    U+200D) and no-break spaces, which str.isprintable() refuses, are fine. The admin API's document says the same."""
    if not name.strip() or NAME_REFUSED.search(name):
        raise ValueError("must be one line of visible text")
    return name.strip()


async def find_meeting(store: Store, ref: str) -> Meeting:
    """By id, or by join code (codes are digits, ids start with m-, so they never collide)."""
    meeting = await store.get_meeting(ref)
    if meeting is None and ref.isdigit():
        meeting = await store.meeting_by_code(ref)
    if meeting is None:
        not_found("meeting", ref)
    return meeting


async def _views(store: Store, meetings: list[Meeting]) -> list[dict[str, Any]]:
    configured = await store.meeting_ids("config")
    active: dict[str, int] = {}
    for session in await store.sessions(states=ACTIVE):
        active[session.meeting_id] = active.get(session.meeting_id, 0) + 1
    return [
        meeting_view(m, source="config" if m.id in configured else "runtime", active_sessions=active.get(m.id, 0))
        for m in meetings
    ]


async def list_meetings(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return web.json_response({"meetings": await _views(store, await store.list_meetings())})


async def get_meeting(request: web.Request) -> web.Response:
    store = request.app[STORE]
    [view] = await _views(store, [await find_meeting(store, request.match_info["id"])])
    return web.json_response(view)


def _config(body: dict[str, Any]) -> MeetingConfig:
    by_json = {json_name: name for name, json_name in NAMES.items() if name in CREATE_FIELDS}
    unknown = sorted(set(body) - set(by_json))
    if unknown:
        raise ApiError(400, f"{unknown[0]}: not a field of a new meeting", field=unknown[0])
    try:
        # Strict, from JSON: "3" is not a number and 1 is not a string, but "shared" is an identity mode.
        cfg = MeetingConfig.model_validate_json(json.dumps({by_json[k]: v for k, v in body.items()}), strict=True)
        # A new meeting's name and allow-list follow the rules a change to them does (one line, lengths, counts).
        named = {"name": cfg.name} if cfg.name is not None else {}
        shared = MeetingPatch.model_validate({"allow": cfg.allow, **named}, strict=True)
    except ValidationError as exc:
        raise validation_error(exc, NAMES) from exc
    return cfg.model_copy(update={"name": shared.name}) if cfg.name is not None else cfg


async def add_meeting(request: web.Request) -> web.Response:
    cfg = _config(await read_object(request))
    store = request.app[STORE]
    try:
        meeting = await request.app[REGISTRY].resolve(cfg)
    except PermanentError as exc:
        raise ApiError(422, f"the meeting could not be looked up: {exc}", error="lookup_failed") from exc
    except TransientError as exc:
        raise ApiError(503, f"the meeting lookup failed for now, try again: {exc}") from exc
    existing = await store.get_meeting(meeting.id)
    if existing is not None:
        reason = f"this meeting is already bridged as {existing.id} (code {existing.code})"
        raise ApiError(409, reason, error="duplicate_meeting", id=existing.id)
    holder = await store.meeting_by_code(meeting.code)
    if holder is not None:
        raise ApiError(409, f"code {meeting.code} is already used by meeting {holder.id}", error="duplicate_code")
    try:
        await store.upsert_meeting(meeting, "runtime")
    except StoreConflictError as exc:  # another request took the code between the check and the write
        raise ApiError(409, f"code {meeting.code} is already used", error="duplicate_code") from exc
    log.info("meeting %s (code %s) added by an operator", meeting.id, meeting.code)
    [view] = await _views(store, [meeting])
    return web.json_response(view, status=201, headers={"Location": f"{request.path}/{meeting.id}"})


async def update_meeting(request: web.Request) -> web.Response:
    store = request.app[STORE]
    meeting = await find_meeting(store, request.match_info["id"])
    body = await read_object(request)
    try:
        patch = MeetingPatch.model_validate_json(json.dumps(body), strict=True)
    except ValidationError as exc:
        raise validation_error(exc, {}) from exc  # the model reads camel-case names: its errors name them
    fields = {name: getattr(patch, name) for name in patch.model_fields_set}
    if not fields:
        raise ApiError(400, f"body: give at least one of {', '.join(NAMES[n] for n in PATCH_FIELDS)}")
    # A new identity mode or template applies to sessions that start from now on; live call legs keep theirs.
    await store.update_meeting(meeting.id, **fields)
    log.info("meeting %s changed by an operator: %s", meeting.id, ", ".join(sorted(fields)))
    [view] = await _views(store, [await find_meeting(store, meeting.id)])
    return web.json_response(view)


async def remove_meeting(request: web.Request) -> web.Response:
    store, relay = request.app[STORE], request.app[RELAY]
    meeting = await find_meeting(store, request.match_info["id"])
    await store.update_meeting(meeting.id, paused=True)  # nobody joins while the others are taken out
    active = await store.sessions(meeting.id, ACTIVE)
    for session in active:
        await relay.presence.leave(session, "meeting removed")
    await _settle(store, meeting.id, {s.id for s in active})
    await store.delete_meeting(meeting.id)
    log.info("meeting %s removed by an operator (%d sessions ended)", meeting.id, len(active))
    return web.Response(status=204)


async def _settle(store: Store, meeting_id: str, session_ids: set[int]) -> None:
    """Give the notices of the sessions just ended a bounded chance to go out before their meeting is deleted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NOTICE_GRACE_S
    while session_ids and loop.time() < deadline:
        pending = await store.deliveries(
            meeting_id=meeting_id, direction=Direction.OUTBOUND, state=DeliveryState.PENDING, limit=1000
        )
        if not any(d.session_id in session_ids for d in pending):
            return
        await asyncio.sleep(0.1)
