"""Meetings and external users in the store."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from ..models import ExternalUser, IdentityMode, Meeting
from .base import StoreBase, _ts, utcnow


class Directory(StoreBase):
    # meetings ---------------------------------------------------------------------------------------

    @staticmethod
    def _meeting(row: aiosqlite.Row) -> Meeting:
        return Meeting(
            id=row["id"],
            code=row["code"],
            name=row["name"],
            link=row["link"],
            thread_id=row["thread_id"],
            join_meeting_id=row["join_meeting_id"],
            passcode=row["passcode"],
            organizer_id=row["organizer_id"],
            identity_mode=IdentityMode(row["identity_mode"]),
            display_name_template=row["display_name_template"],
            allow=json.loads(row["allow"]),
            paused=bool(row["paused"]),
            sms_segment_cap=row["sms_segment_cap"],
            relay_identity=row["relay_identity"],
            cursor=row["cursor"],
        )

    async def upsert_meeting(self, m: Meeting, source: str = "config") -> None:
        async with self.transaction() as db:
            await db.execute(
                """INSERT INTO meetings (id, code, name, link, thread_id, join_meeting_id, passcode, organizer_id,
                       identity_mode, display_name_template, allow, paused, source, created_at, sms_segment_cap)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET code=excluded.code, name=excluded.name, link=excluded.link,
                       thread_id=COALESCE(excluded.thread_id, meetings.thread_id),
                       join_meeting_id=excluded.join_meeting_id, passcode=excluded.passcode,
                       organizer_id=excluded.organizer_id, identity_mode=excluded.identity_mode,
                       display_name_template=excluded.display_name_template, allow=excluded.allow,
                       sms_segment_cap=excluded.sms_segment_cap""",
                (
                    m.id,
                    m.code,
                    m.name,
                    m.link,
                    m.thread_id,
                    m.join_meeting_id,
                    m.passcode,
                    m.organizer_id,
                    m.identity_mode.value,
                    m.display_name_template,
                    json.dumps(m.allow),
                    int(m.paused),
                    source,
                    _ts(utcnow()),
                    m.sms_segment_cap,
                ),
            )

    async def get_meeting(self, meeting_id: str) -> Meeting | None:
        row = await self._one("SELECT * FROM meetings WHERE id=?", (meeting_id,))
        return self._meeting(row) if row else None

    async def meeting_by_thread(self, thread_id: str) -> Meeting | None:
        row = await self._one("SELECT * FROM meetings WHERE thread_id=?", (thread_id,))
        return self._meeting(row) if row else None

    async def meeting_by_code(self, code: str) -> Meeting | None:
        row = await self._one("SELECT * FROM meetings WHERE code=?", (code,))
        return self._meeting(row) if row else None

    async def list_meetings(self) -> list[Meeting]:
        return [self._meeting(r) for r in await self._all("SELECT * FROM meetings ORDER BY created_at, id")]

    async def update_meeting(self, meeting_id: str, **fields: Any) -> None:
        # Policy fields are stored as their column types: allow as JSON, the identity mode as its value.
        if "allow" in fields:
            fields["allow"] = json.dumps(list(fields["allow"]))
        if isinstance(fields.get("identity_mode"), IdentityMode):
            fields["identity_mode"] = fields["identity_mode"].value
        allowed = {"thread_id", "relay_identity", "cursor", "paused", "name"}
        allowed |= {"allow", "identity_mode", "display_name_template", "sms_segment_cap"}
        await self._update("meetings", allowed, meeting_id, fields)

    async def meeting_ids(self, source: str) -> set[str]:
        return {r[0] for r in await self._all("SELECT id FROM meetings WHERE source=?", (source,))}

    async def delete_meeting(self, meeting_id: str) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM outbox WHERE meeting_id=?", (meeting_id,))
            await db.execute("DELETE FROM meetings WHERE id=?", (meeting_id,))

    # users ------------------------------------------------------------------------------------------

    @staticmethod
    def _user(row: aiosqlite.Row) -> ExternalUser:
        return ExternalUser(
            id=row["id"],
            channel=row["channel"],
            display_name=row["display_name"],
            identity_id=row["identity_id"],
            blocked=bool(row["blocked"]),
            opted_out=bool(row["opted_out"]),
        )

    async def get_user(self, user_id: str) -> ExternalUser | None:
        row = await self._one("SELECT * FROM users WHERE id=?", (user_id,))
        return self._user(row) if row else None

    async def upsert_user(self, user_id: str, channel: str, display_name: str | None) -> ExternalUser:
        async with self.transaction() as db:
            await db.execute(
                """INSERT INTO users (id, channel, display_name, created_at) VALUES (?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET display_name=COALESCE(?, users.display_name)""",
                (user_id, channel, display_name or user_id.split("/")[-1], _ts(utcnow()), display_name),
            )
        user = await self.get_user(user_id)
        assert user is not None
        return user

    async def update_user(self, user_id: str, **fields: Any) -> None:
        await self._update("users", {"identity_id", "blocked", "opted_out", "display_name"}, user_id, fields)

    async def drop_identity(self, identity_id: str) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE users SET identity_id=NULL WHERE identity_id=?", (identity_id,))
            await db.execute("UPDATE meetings SET relay_identity=NULL WHERE relay_identity=?", (identity_id,))

    async def forget_user(self, user_id: str) -> None:
        """Delete the user, their sessions and every stored message to or from them."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM outbox WHERE user_id=?", (user_id,))
            await db.execute("DELETE FROM users WHERE id=?", (user_id,))

    async def identities(self) -> set[str]:
        """Every ACS identity the bridge speaks as: the bridge must never relay its own messages back."""
        rows = await self._all(
            "SELECT identity_id FROM users WHERE identity_id IS NOT NULL "
            "UNION SELECT relay_identity FROM meetings WHERE relay_identity IS NOT NULL"
        )
        return {r[0] for r in rows}
