"""The statements every backend provides: one name per query the domain methods run, no SQL here.

Each backend spells all of them in its own dialect in one module (bot/store/sqlite/sql.py,
bot/store/postgres/sql.py); mypy checks that both spell every one. Arguments are positional and the same on both
backends, in the order each comment gives; timestamps are ISO 8601 text, flags are bool, JSON is text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Statements(Protocol):
    serialize: str | None
    """(list of keys): lock each, in order, until the transaction ends; None where transactions already run one
    at a time."""

    # meetings and users
    upsert_meeting: str
    """(id, code, name, link, thread_id, join_meeting_id, passcode, organizer_id, identity_mode,
    display_name_template, allow, paused, source, created_at, sms_segment_cap); keeps a known thread id."""
    get_meeting: str
    meeting_by_thread: str
    meeting_by_code: str
    list_meetings: str
    meeting_ids: str
    """(source)"""
    delete_meeting_outbox: str
    delete_meeting: str
    get_user: str
    upsert_user: str
    """(id, channel, display_name, created_at, new display name or None) RETURNING the row."""
    drop_user_identity: str
    drop_relay_identity: str
    delete_user_outbox: str
    delete_user: str
    identities: str

    def update(self, table: str, columns: tuple[str, ...]) -> str:
        """UPDATE table SET each column WHERE id; arguments: the values, then the id."""
        ...

    # sessions
    get_session: str
    active_session: str
    """(user_id, meeting_id)"""
    current_session: str
    """(user_id): the latest active session in any meeting."""
    insert_session: str
    """(user_id, meeting_id, state, identity_id, last_activity, created_at, updated_at) RETURNING the row."""
    insert_session_event: str
    """(session_id, state, reason, at)"""
    set_session_state: str
    """(state, reason, call_id or None, joined_at or None, updated_at, in the call (keeps the condition), id)"""
    settle_held: str
    """(state, last_error, updated_at, session_id): the session's held deliveries."""
    touch_session: str
    session_events: str
    count_held: str
    release_held: str
    """(updated_at, session_id)"""
    session_counts: str
    set_condition: str
    """(condition, condition_reason, updated_at, id): only while the session is in the call."""
    clear_condition: str
    """(updated_at, id)"""
    expire_held: str
    """(last_error, updated_at, session_id, before): fail its held deliveries accepted before then."""
    condition_counts: str
    """(condition): sessions in the call with it, by meeting."""

    def held_since(self, session_ids: Sequence[int]) -> tuple[str, Sequence[Any]]:
        """The oldest created_at of the sessions' held deliveries; with its arguments."""
        ...

    def sessions(self, meeting_id: str | None, states: Sequence[str] | None) -> tuple[str, Sequence[Any]]:
        """Sessions of the meeting (any when None) in those states (any when None), by id; with its arguments."""
        ...

    # inbox and outbox
    insert_delivery: str
    """(id, direction, meeting_id, user_id, session_id, kind, body, state, next_attempt_at, created_at,
    updated_at)"""
    inbox_answer: str
    """(channel, provider_id)"""
    insert_inbox: str
    """(channel, provider_id, status, answer, received_at); touches no row when the id is known."""
    prune_inbox: str
    """(before): provider ids received before then."""
    waiting: str
    """(meeting_id, user_id, direction): how many of the meeting's, and of the user's, are pending or held."""
    meeting_head_due: str
    """(meeting_id, direction): next_attempt_at of the oldest pending."""
    notice_told_and_accepted: str
    """(user_id, outbound, notice state, inbound): the newest such notice's seq, the newest inbound seq."""
    outbound_backlog: str
    """(user_id, backlog notice state)"""
    waiting_after: str
    """(user_id, backlog notice state, keep): waiting outbound rows past the oldest `keep`."""
    fail_delivery: str
    """(state, last_error, updated_at, id)"""
    backlog_notice_waiting: str
    set_cursor: str
    """(cursor, meeting_id)"""
    insert_seen: str
    """(meeting_id, message_id, version); touches no row when seen before."""
    get_delivery: str
    mark_attempt: str
    """(first_attempt_at, updated_at, id)"""
    uncount_attempt: str
    """(updated_at, id)"""
    finish: str
    """(state, remote_id or None, last_error, next_attempt_at, updated_at, id)"""
    outbox_depth: str
    record_report: str
    """(report, updated_at, remote_id)"""
    report_of: str
    add_sms_usage: str
    """(user_id, at, segments)"""
    sms_sent_since: str
    sms_usage: str
    """(user_id, since): total segments and the oldest send."""

    def pending(self, key_column: str) -> str:
        """(direction, key, limit): pending rows of one meeting_id or user_id, oldest first."""
        ...

    def pending_keys(self, key_column: str) -> str:
        """(direction): every meeting_id or user_id with pending rows."""
        ...

    def deliveries(self, columns: tuple[str, ...], since: bool, until: bool, newest_first: bool) -> str:
        """(each column's value, since, until, limit): rows matching them all, by seq."""
        ...
