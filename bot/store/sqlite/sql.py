"""Every statement the store runs on SQLite (the names and arguments are bot/store/statements.py's)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from ..base import ACTIVE_SQL

_WAITING_FOR_USER = "user_id=? AND direction='out' AND state='pending'"
_IS_BACKLOG_NOTICE = "(kind='notice' AND json_extract(body, '$.state')=?)"


class SqliteStatements:
    # One writer at a time (BEGIN IMMEDIATE under a lock): nothing is left to serialize.
    serialize: str | None = None

    # meetings and users ---------------------------------------------------------------------------
    upsert_meeting = """INSERT INTO meetings (id, code, name, link, thread_id, join_meeting_id, passcode, organizer_id,
               identity_mode, display_name_template, allow, paused, source, created_at, sms_segment_cap)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
           ON CONFLICT(id) DO UPDATE SET code=excluded.code, name=excluded.name, link=excluded.link,
               thread_id=COALESCE(excluded.thread_id, meetings.thread_id),
               join_meeting_id=excluded.join_meeting_id, passcode=excluded.passcode,
               organizer_id=excluded.organizer_id, identity_mode=excluded.identity_mode,
               display_name_template=excluded.display_name_template, allow=excluded.allow,
               sms_segment_cap=excluded.sms_segment_cap"""
    get_meeting = "SELECT * FROM meetings WHERE id=?"
    meeting_by_thread = "SELECT * FROM meetings WHERE thread_id=?"
    meeting_by_code = "SELECT * FROM meetings WHERE code=?"
    list_meetings = "SELECT * FROM meetings ORDER BY created_at, id"
    meeting_ids = "SELECT id FROM meetings WHERE source=?"
    delete_meeting_outbox = "DELETE FROM outbox WHERE meeting_id=?"
    delete_meeting = "DELETE FROM meetings WHERE id=?"
    get_user = "SELECT * FROM users WHERE id=?"
    upsert_user = """INSERT INTO users (id, channel, display_name, created_at) VALUES (?,?,?,?)
           ON CONFLICT(id) DO UPDATE SET display_name=COALESCE(?, users.display_name) RETURNING *"""
    drop_user_identity = "UPDATE users SET identity_id=NULL WHERE identity_id=?"
    drop_relay_identity = "UPDATE meetings SET relay_identity=NULL WHERE relay_identity=?"
    delete_user_outbox = "DELETE FROM outbox WHERE user_id=?"
    delete_user = "DELETE FROM users WHERE id=?"
    identities = (
        "SELECT identity_id FROM users WHERE identity_id IS NOT NULL "
        "UNION SELECT relay_identity FROM meetings WHERE relay_identity IS NOT NULL"
    )

    @staticmethod
    @cache
    def update(table: str, columns: tuple[str, ...]) -> str:
        return f"UPDATE {table} SET {', '.join(f'{c}=?' for c in columns)} WHERE id=?"

    # sessions -------------------------------------------------------------------------------------
    get_session = "SELECT * FROM sessions WHERE id=?"
    active_session = f"SELECT * FROM sessions WHERE user_id=? AND meeting_id=? AND state IN {ACTIVE_SQL}"
    current_session = f"SELECT * FROM sessions WHERE user_id=? AND state IN {ACTIVE_SQL} ORDER BY id DESC LIMIT 1"
    insert_session = """INSERT INTO sessions (user_id, meeting_id, state, identity_id, last_activity, created_at,
           updated_at) VALUES (?,?,?,?,?,?,?) RETURNING *"""
    insert_session_event = "INSERT INTO session_events (session_id, state, reason, at) VALUES (?,?,?,?)"
    set_session_state = """UPDATE sessions SET state=?1, reason=?2, call_id=COALESCE(?3, call_id),
           joined_at=COALESCE(?4, joined_at), updated_at=?5,
           condition=CASE WHEN ?6 THEN condition END, condition_reason=CASE WHEN ?6 THEN condition_reason END
           WHERE id=?7"""
    settle_held = "UPDATE outbox SET state=?, last_error=?, updated_at=? WHERE session_id=? AND state='held'"
    touch_session = "UPDATE sessions SET last_activity=? WHERE id=?"
    session_events = "SELECT state, reason FROM session_events WHERE session_id=? ORDER BY rowid"
    count_held = "SELECT COUNT(*) FROM outbox WHERE session_id=? AND state='held'"
    release_held = "UPDATE outbox SET state='pending', updated_at=? WHERE session_id=? AND state='held'"
    session_counts = "SELECT state, COUNT(*) FROM sessions GROUP BY state"
    set_condition = "UPDATE sessions SET condition=?, condition_reason=?, updated_at=? WHERE id=? AND state='in_call'"
    clear_condition = "UPDATE sessions SET condition=NULL, condition_reason=NULL, updated_at=? WHERE id=?"
    expire_held = """UPDATE outbox SET state='failed', last_error=?, updated_at=?
           WHERE session_id=? AND state='held' AND created_at < ?"""
    condition_counts = (
        "SELECT meeting_id, COUNT(*) FROM sessions WHERE state='in_call' AND condition=? GROUP BY meeting_id"
    )

    @staticmethod
    def held_since(session_ids: Sequence[int]) -> tuple[str, Sequence[Any]]:
        marks = ",".join("?" * len(session_ids))
        return f"SELECT MIN(created_at) FROM outbox WHERE state='held' AND session_id IN ({marks})", list(session_ids)

    @staticmethod
    def sessions(meeting_id: str | None, states: Sequence[str] | None) -> tuple[str, Sequence[Any]]:
        sql, args = "SELECT * FROM sessions WHERE 1=1", list[Any]()
        if meeting_id is not None:
            sql, args = sql + " AND meeting_id=?", [meeting_id]
        if states is not None:
            sql, args = sql + f" AND state IN ({','.join('?' * len(states))})", [*args, *states]
        return sql + " ORDER BY id", args

    # inbox and outbox -----------------------------------------------------------------------------
    insert_delivery = """INSERT INTO outbox (id, direction, meeting_id, user_id, session_id, kind, body, state,
           next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"""
    inbox_answer = "SELECT status, answer FROM inbox WHERE channel=? AND provider_id=?"
    insert_inbox = "INSERT OR IGNORE INTO inbox (channel, provider_id, status, answer, received_at) VALUES (?,?,?,?,?)"
    prune_inbox = "DELETE FROM inbox WHERE received_at < ?"
    waiting = """SELECT
             (SELECT COUNT(*) FROM outbox WHERE meeting_id=?1 AND direction=?3 AND state IN ('pending','held')),
             (SELECT COUNT(*) FROM outbox WHERE user_id=?2 AND direction=?3 AND state IN ('pending','held'))"""
    meeting_head_due = (
        "SELECT next_attempt_at FROM outbox WHERE meeting_id=? AND direction=? AND state='pending' ORDER BY seq LIMIT 1"
    )
    notice_told_and_accepted = """SELECT
             (SELECT MAX(seq) FROM outbox WHERE user_id=?1 AND direction=?2 AND kind='notice'
                AND json_extract(body, '$.state')=?3),
             (SELECT MAX(seq) FROM outbox WHERE user_id=?1 AND direction=?4)"""
    outbound_backlog = f"SELECT COUNT(*) FROM outbox WHERE {_WAITING_FOR_USER} AND NOT {_IS_BACKLOG_NOTICE}"
    waiting_after = (
        f"SELECT * FROM outbox WHERE {_WAITING_FOR_USER} AND NOT {_IS_BACKLOG_NOTICE} ORDER BY seq LIMIT -1 OFFSET ?"
    )
    fail_delivery = "UPDATE outbox SET state=?, last_error=?, updated_at=? WHERE id=?"
    backlog_notice_waiting = f"SELECT 1 FROM outbox WHERE {_WAITING_FOR_USER} AND {_IS_BACKLOG_NOTICE} LIMIT 1"
    set_cursor = "UPDATE meetings SET cursor=? WHERE id=?"
    insert_seen = "INSERT OR IGNORE INTO seen_messages (meeting_id, message_id, version) VALUES (?,?,?)"
    get_delivery = "SELECT * FROM outbox WHERE id=?"
    mark_attempt = (
        "UPDATE outbox SET attempts=attempts+1, first_attempt_at=COALESCE(first_attempt_at, ?), updated_at=? WHERE id=?"
    )
    uncount_attempt = "UPDATE outbox SET attempts=MAX(attempts-1, 0), updated_at=? WHERE id=?"
    finish = """UPDATE outbox SET state=?, remote_id=COALESCE(?, remote_id), last_error=?,
           next_attempt_at=?, updated_at=? WHERE id=?"""
    outbox_depth = "SELECT direction, COUNT(*) FROM outbox WHERE state IN ('pending','held') GROUP BY 1"
    record_report = "UPDATE outbox SET report=?, updated_at=? WHERE remote_id=?"
    report_of = "SELECT report FROM outbox WHERE id=?"
    add_sms_usage = "INSERT INTO sms_usage (user_id, at, segments) VALUES (?,?,?)"
    sms_sent_since = "SELECT at FROM sms_usage WHERE at>=? ORDER BY at"
    sms_usage = "SELECT COALESCE(SUM(segments), 0), MIN(at) FROM sms_usage WHERE user_id=? AND at>=?"

    @staticmethod
    @cache
    def pending(key_column: str) -> str:
        return f"SELECT * FROM outbox WHERE direction=? AND state='pending' AND {key_column}=? ORDER BY seq LIMIT ?"

    @staticmethod
    @cache
    def pending_keys(key_column: str) -> str:
        return f"SELECT DISTINCT {key_column} FROM outbox WHERE direction=? AND state='pending'"

    @staticmethod
    @cache
    def deliveries(columns: tuple[str, ...], since: bool, until: bool, newest_first: bool) -> str:
        sql = "SELECT * FROM outbox WHERE 1=1" + "".join(f" AND {c}=?" for c in columns)
        # Stored times are UTC ISO strings of one width, so they compare as text.
        sql += " AND created_at>=?" * since + " AND created_at<?" * until
        return sql + (" ORDER BY seq DESC" if newest_first else " ORDER BY seq") + " LIMIT ?"


STATEMENTS = SqliteStatements()
