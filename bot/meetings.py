"""The meeting registry: turns configured or added meetings (long link, short link, Graph id) into stored meetings."""

from __future__ import annotations

import hashlib
import logging
from typing import Protocol

from aiohttp import web

from .config import MeetingConfig
from .errors import BridgeError, MeetingLookupError
from .links import JoinLinkError, parse_join_link
from .models import Meeting, MeetingInfo
from .store import Store

log = logging.getLogger(__name__)


class MeetingLookup(Protocol):
    async def by_join_meeting_id(self, organizer_id: str, join_meeting_id: str) -> MeetingInfo: ...
    async def by_id(self, organizer_id: str, meeting_id: str) -> MeetingInfo: ...


def meeting_key(source: str) -> str:
    """A stable id from the link or Graph id, so a restart finds the same stored meeting."""
    return "m-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:10]


class MeetingRegistry:
    def __init__(self, store: Store, graph: MeetingLookup | None) -> None:
        self._store = store
        self._graph = graph

    async def resolve(self, cfg: MeetingConfig) -> Meeting:
        """Where the thread id can be known before anyone joins, learn it; else it is read when the first leg joins."""
        info: MeetingInfo | None = None
        link = cfg.link
        thread_id = join_id = passcode = None
        organizer = cfg.organizer_id
        if link is not None:
            try:
                parsed = parse_join_link(link)
            except JoinLinkError as exc:
                raise MeetingLookupError(f"link: {exc}") from exc
            thread_id, join_id, passcode = parsed.thread_id, parsed.join_meeting_id, parsed.passcode
            organizer = organizer or parsed.organizer_id
            if thread_id is None and join_id and organizer and self._graph is not None:
                info = await self._graph.by_join_meeting_id(organizer, join_id)
        else:
            assert cfg.graph_meeting_id and cfg.organizer_id
            if self._graph is None:
                raise MeetingLookupError("graph_meeting_id needs the [graph] section configured")
            info = await self._graph.by_id(cfg.organizer_id, cfg.graph_meeting_id)
            link = info.join_web_url
        if info is not None:
            thread_id = info.thread_id
            join_id = join_id or info.join_meeting_id
            passcode = passcode or info.passcode
        key = meeting_key(cfg.graph_meeting_id or thread_id or link or "")
        return Meeting(
            id=key,
            code=cfg.code or await self._free_code(key),
            name=cfg.name or (info.subject if info and info.subject else "the meeting"),
            link=link,
            thread_id=thread_id,
            join_meeting_id=join_id,
            passcode=passcode,
            organizer_id=organizer,
            identity_mode=cfg.identity_mode,
            display_name_template=cfg.display_name_template,
            allow=list(cfg.allow),
            sms_segment_cap=cfg.sms_segment_cap,
        )

    async def _free_code(self, key: str) -> str:
        number = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 900_000 + 100_000
        while True:
            code = str(number)
            holder = await self._store.meeting_by_code(code)
            if holder is None or holder.id == key:
                return code
            number = number + 1 if number < 999_999 else 100_000

    async def add(self, cfg: MeetingConfig, source: str = "runtime") -> Meeting:
        meeting = await self.resolve(cfg)
        holder = await self._store.meeting_by_code(meeting.code)
        if holder is not None and holder.id != meeting.id:
            raise MeetingLookupError(f"code {meeting.code} is already used by another meeting")
        await self._store.upsert_meeting(meeting, source)
        log.info("meeting %s (code %s) ready", meeting.id, meeting.code)
        return meeting

    async def sync(self, configs: list[MeetingConfig]) -> int:
        """Store every configured meeting and drop those no longer configured; one that cannot be resolved is
        logged and skipped, not fatal."""
        resolved: list[Meeting] = []
        for index, cfg in enumerate(configs):
            try:
                resolved.append(await self.resolve(cfg))
            except BridgeError as exc:
                log.error("meetings[%d]: %s", index, exc)
        keep = {m.id for m in resolved}
        for stale in await self._store.meeting_ids("config") - keep:
            # Frees its join code for the meeting that now holds it in the configuration.
            await self._store.delete_meeting(stale)
            log.info("meeting %s is no longer configured; removed", stale)
        ready = 0
        for meeting in resolved:
            holder = await self._store.meeting_by_code(meeting.code)
            if holder is not None and holder.id != meeting.id:
                log.error("meeting %s: code %s is already used by meeting %s", meeting.id, meeting.code, holder.id)
                continue
            await self._store.upsert_meeting(meeting, "config")
            ready += 1
        return ready


REGISTRY: web.AppKey[MeetingRegistry] = web.AppKey("registry")
