"""Meetings and external users in the store."""

from __future__ import annotations

import json
from typing import Any

from ..models import ExternalUser, IdentityMode, Meeting
from .base import Row, StoreBase, _ts, utcnow


class Directory(StoreBase):
    # meetings ---------------------------------------------------------------------------------------

    @staticmethod
    def _meeting(row: Row) -> Meeting:
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
        async with self.one_statement() as tx:
            await tx.run(
                self.sql.upsert_meeting,
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
                    m.paused,
                    source,
                    _ts(utcnow()),
                    m.sms_segment_cap,
                ),
            )

    async def get_meeting(self, meeting_id: str) -> Meeting | None:
        row = await self._one(self.sql.get_meeting, (meeting_id,))
        return self._meeting(row) if row else None

    async def meeting_by_thread(self, thread_id: str) -> Meeting | None:
        row = await self._one(self.sql.meeting_by_thread, (thread_id,))
        return self._meeting(row) if row else None

    async def meeting_by_code(self, code: str) -> Meeting | None:
        row = await self._one(self.sql.meeting_by_code, (code,))
        return self._meeting(row) if row else None

    async def list_meetings(self) -> list[Meeting]:
        return [self._meeting(r) for r in await self._all(self.sql.list_meetings)]

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
        return {r[0] for r in await self._all(self.sql.meeting_ids, (source,))}

    async def delete_meeting(self, meeting_id: str) -> None:
        async with self.transaction() as tx:
            await tx.run(self.sql.delete_meeting_outbox, (meeting_id,))
            await tx.run(self.sql.delete_meeting, (meeting_id,))

    # users ------------------------------------------------------------------------------------------

    @staticmethod
    def _user(row: Row) -> ExternalUser:
        return ExternalUser(
            id=row["id"],
            channel=row["channel"],
            display_name=row["display_name"],
            identity_id=row["identity_id"],
            blocked=bool(row["blocked"]),
            opted_out=bool(row["opted_out"]),
        )

    async def get_user(self, user_id: str) -> ExternalUser | None:
        row = await self._one(self.sql.get_user, (user_id,))
        return self._user(row) if row else None

    async def upsert_user(self, user_id: str, channel: str, display_name: str | None) -> ExternalUser:
        async with self.one_statement() as tx:
            row = await tx.one(
                self.sql.upsert_user,
                (user_id, channel, display_name or user_id.split("/")[-1], _ts(utcnow()), display_name),
            )
        assert row is not None
        return self._user(row)

    async def update_user(self, user_id: str, **fields: Any) -> None:
        await self._update("users", {"identity_id", "blocked", "opted_out", "display_name"}, user_id, fields)

    async def drop_identity(self, identity_id: str) -> None:
        async with self.transaction() as tx:
            await tx.run(self.sql.drop_user_identity, (identity_id,))
            await tx.run(self.sql.drop_relay_identity, (identity_id,))

    async def forget_user(self, user_id: str) -> None:
        """Delete the user, their sessions and every stored message to or from them."""
        async with self.transaction() as tx:
            await tx.run(self.sql.delete_user_outbox, (user_id,))
            await tx.run(self.sql.delete_user, (user_id,))

    async def identities(self) -> set[str]:
        """Every ACS identity the bridge speaks as: the bridge must never relay its own messages back."""
        rows = await self._all(self.sql.identities)
        return {r[0] for r in rows}
