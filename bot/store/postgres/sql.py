"""Every statement the store runs on PostgreSQL (the names and arguments are bot/store/statements.py's)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from ..base import ACTIVE_SQL

_WAITING_FOR_USER = "user_id=$1 AND direction='out' AND state='pending'"
_IS_BACKLOG_NOTICE = "(kind='notice' AND body->>'state'=$2)"


def _marks(start: int, count: int) -> list[str]:
    return [f"${n}" for n in range(start, start + count)]


class PostgresStatements:
    # Transaction-scoped: released at commit or rollback, so a lock cannot outlive the work it guards. Each key is
    # hashed to the 64-bit lock space (two keys that collide only wait for each other), taken in the array's order,
    # all in one round trip.
    serialize: str | None = "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k"

    # meetings and users ---------------------------------------------------------------------------
    upsert_meeting = """INSERT INTO meetings (id, code, name, link, thread_id, join_meeting_id, passcode, organizer_id,
               identity_mode, display_name_template, allow, paused, source, created_at, sms_segment_cap)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
           ON CONFLICT (id) DO UPDATE SET code=excluded.code, name=excluded.name, link=excluded.link,
               thread_id=COALESCE(excluded.thread_id, meetings.thread_id),
               join_meeting_id=excluded.join_meeting_id, passcode=excluded.passcode,
               organizer_id=excluded.organizer_id, identity_mode=excluded.identity_mode,
               display_name_template=excluded.display_name_template, allow=excluded.allow,
               sms_segment_cap=excluded.sms_segment_cap"""
    get_meeting = "SELECT * FROM meetings WHERE id=$1"
    meeting_by_thread = "SELECT * FROM meetings WHERE thread_id=$1"
    meeting_by_code = "SELECT * FROM meetings WHERE code=$1"
    list_meetings = "SELECT * FROM meetings ORDER BY created_at, id"
    meeting_ids = "SELECT id FROM meetings WHERE source=$1"
    delete_meeting_outbox = "DELETE FROM outbox WHERE meeting_id=$1"
    delete_meeting = "DELETE FROM meetings WHERE id=$1"
    get_user = "SELECT * FROM users WHERE id=$1"
    upsert_user = """INSERT INTO users (id, channel, display_name, created_at) VALUES ($1,$2,$3,$4)
           ON CONFLICT (id) DO UPDATE SET display_name=COALESCE($5, users.display_name) RETURNING *"""
    drop_user_identity = "UPDATE users SET identity_id=NULL WHERE identity_id=$1"
    drop_relay_identity = "UPDATE meetings SET relay_identity=NULL WHERE relay_identity=$1"
    delete_user_outbox = "DELETE FROM outbox WHERE user_id=$1"
    delete_user = "DELETE FROM users WHERE id=$1"
    identities = (
        "SELECT identity_id FROM users WHERE identity_id IS NOT NULL "
        "UNION SELECT relay_identity FROM meetings WHERE relay_identity IS NOT NULL"
    )

    @staticmethod
    @cache
    def update(table: str, columns: tuple[str, ...]) -> str:
        sets = ", ".join(f"{c}={m}" for c, m in zip(columns, _marks(1, len(columns)), strict=True))
        return f"UPDATE {table} SET {sets} WHERE id=${len(columns) + 1}"

    # sessions -------------------------------------------------------------------------------------
    get_session = "SELECT * FROM sessions WHERE id=$1"
    active_session = f"SELECT * FROM sessions WHERE user_id=$1 AND meeting_id=$2 AND state IN {ACTIVE_SQL}"
    current_session = f"SELECT * FROM sessions WHERE user_id=$1 AND state IN {ACTIVE_SQL} ORDER BY id DESC LIMIT 1"
    insert_session = """INSERT INTO sessions (user_id, meeting_id, state, identity_id, last_activity, created_at,
           updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING *"""
    insert_session_event = "INSERT INTO session_events (session_id, state, reason, at) VALUES ($1,$2,$3,$4)"
    set_session_state = """UPDATE sessions SET state=$1, reason=$2, call_id=COALESCE($3, call_id),
           joined_at=COALESCE($4, joined_at), updated_at=$5,
           condition=CASE WHEN $6 THEN condition END, condition_reason=CASE WHEN $6 THEN condition_reason END
           WHERE id=$7"""
    settle_held = "UPDATE outbox SET state=$1, last_error=$2, updated_at=$3 WHERE session_id=$4 AND state='held'"
    touch_session = "UPDATE sessions SET last_activity=$1 WHERE id=$2"
    session_events = "SELECT state, reason FROM session_events WHERE session_id=$1 ORDER BY id"
    count_held = "SELECT COUNT(*) FROM outbox WHERE session_id=$1 AND state='held'"
    release_held = "UPDATE outbox SET state='pending', updated_at=$1 WHERE session_id=$2 AND state='held'"
    session_counts = "SELECT state, COUNT(*) FROM sessions GROUP BY state"
    set_condition = (
        "UPDATE sessions SET condition=$1, condition_reason=$2, updated_at=$3 WHERE id=$4 AND state='in_call'"
    )
    clear_condition = "UPDATE sessions SET condition=NULL, condition_reason=NULL, updated_at=$1 WHERE id=$2"
    expire_held = """UPDATE outbox SET state='failed', last_error=$1, updated_at=$2
           WHERE session_id=$3 AND state='held' AND created_at < $4"""
    condition_counts = (
        "SELECT meeting_id, COUNT(*) FROM sessions WHERE state='in_call' AND condition=$1 GROUP BY meeting_id"
    )

    @staticmethod
    def held_since(session_ids: Sequence[int]) -> tuple[str, Sequence[Any]]:
        return (
            "SELECT MIN(created_at) FROM outbox WHERE state='held' AND session_id = ANY($1::bigint[])",
            [list(session_ids)],
        )

    @staticmethod
    def sessions(meeting_id: str | None, states: Sequence[str] | None) -> tuple[str, Sequence[Any]]:
        # One statement per shape (not "$1 IS NULL OR ..."), so each keeps a plan that uses its index.
        where, args = [], list[Any]()
        if meeting_id is not None:
            where, args = ["meeting_id=$1"], [meeting_id]
        if states is not None:
            where, args = [*where, f"state = ANY(${len(args) + 1}::text[])"], [*args, list(states)]
        clause = " WHERE " + " AND ".join(where) if where else ""
        return f"SELECT * FROM sessions{clause} ORDER BY id", args

    # inbox and outbox -----------------------------------------------------------------------------
    insert_delivery = """INSERT INTO outbox (id, direction, meeting_id, user_id, session_id, kind, body, state,
           next_attempt_at, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"""
    inbox_answer = "SELECT status, answer FROM inbox WHERE channel=$1 AND provider_id=$2"
    insert_inbox = """INSERT INTO inbox (channel, provider_id, status, answer, received_at) VALUES ($1,$2,$3,$4,$5)
           ON CONFLICT DO NOTHING"""
    prune_inbox = "DELETE FROM inbox WHERE received_at < $1"
    waiting = """SELECT
             (SELECT COUNT(*) FROM outbox WHERE meeting_id=$1 AND direction=$3 AND state IN ('pending','held')),
             (SELECT COUNT(*) FROM outbox WHERE user_id=$2 AND direction=$3 AND state IN ('pending','held'))"""
    meeting_head_due = """SELECT next_attempt_at FROM outbox WHERE meeting_id=$1 AND direction=$2 AND state='pending'
           ORDER BY seq LIMIT 1"""
    notice_told_and_accepted = """SELECT
             (SELECT MAX(seq) FROM outbox WHERE user_id=$1 AND direction=$2 AND kind='notice'
                AND body->>'state'=$3),
             (SELECT MAX(seq) FROM outbox WHERE user_id=$1 AND direction=$4)"""
    outbound_backlog = f"SELECT COUNT(*) FROM outbox WHERE {_WAITING_FOR_USER} AND NOT {_IS_BACKLOG_NOTICE}"
    waiting_after = (
        f"SELECT * FROM outbox WHERE {_WAITING_FOR_USER} AND NOT {_IS_BACKLOG_NOTICE} ORDER BY seq OFFSET $3"
    )
    fail_delivery = "UPDATE outbox SET state=$1, last_error=$2, updated_at=$3 WHERE id=$4"
    backlog_notice_waiting = f"SELECT 1 FROM outbox WHERE {_WAITING_FOR_USER} AND {_IS_BACKLOG_NOTICE} LIMIT 1"
    set_cursor = "UPDATE meetings SET cursor=$1 WHERE id=$2"
    insert_seen = "INSERT INTO seen_messages (meeting_id, message_id, version) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING"
    get_delivery = "SELECT * FROM outbox WHERE id=$1"
    mark_attempt = """UPDATE outbox SET attempts=attempts+1, first_attempt_at=COALESCE(first_attempt_at, $1),
           updated_at=$2 WHERE id=$3"""
    uncount_attempt = "UPDATE outbox SET attempts=GREATEST(attempts-1, 0), updated_at=$1 WHERE id=$2"
    finish = """UPDATE outbox SET state=$1, remote_id=COALESCE($2, remote_id), last_error=$3,
           next_attempt_at=$4, updated_at=$5 WHERE id=$6"""
    outbox_depth = "SELECT direction, COUNT(*) FROM outbox WHERE state IN ('pending','held') GROUP BY 1"
    record_report = "UPDATE outbox SET report=$1, updated_at=$2 WHERE remote_id=$3"
    report_of = "SELECT report FROM outbox WHERE id=$1"
    add_sms_usage = "INSERT INTO sms_usage (user_id, at, segments) VALUES ($1,$2,$3)"
    sms_sent_since = "SELECT at FROM sms_usage WHERE at>=$1 ORDER BY at"
    sms_usage = "SELECT COALESCE(SUM(segments), 0), MIN(at) FROM sms_usage WHERE user_id=$1 AND at>=$2"

    @staticmethod
    @cache
    def pending(key_column: str) -> str:
        return f"SELECT * FROM outbox WHERE direction=$1 AND state='pending' AND {key_column}=$2 ORDER BY seq LIMIT $3"

    @staticmethod
    @cache
    def pending_keys(key_column: str) -> str:
        return f"SELECT DISTINCT {key_column} FROM outbox WHERE direction=$1 AND state='pending'"

    @staticmethod
    @cache
    def deliveries(columns: tuple[str, ...], since: bool, until: bool, newest_first: bool) -> str:
        conditions = [f"{c}=${n}" for n, c in enumerate(columns, start=1)]
        if since:
            conditions.append(f"created_at>=${len(conditions) + 1}")
        if until:
            conditions.append(f"created_at<${len(conditions) + 1}")
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        order = " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        return f"SELECT * FROM outbox{where}{order} LIMIT ${len(conditions) + 1}"


STATEMENTS = PostgresStatements()
