"""The SQLite schema: numbered migrations, each run once, in order, inside a transaction (PRAGMA user_version)."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: meetings, users, sessions, inbox, outbox, seen messages
    """
    CREATE TABLE meetings (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        link TEXT,
        thread_id TEXT,
        join_meeting_id TEXT,
        passcode TEXT,
        organizer_id TEXT,
        identity_mode TEXT NOT NULL,
        display_name_template TEXT NOT NULL,
        allow TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        relay_identity TEXT,
        cursor TEXT,
        source TEXT NOT NULL DEFAULT 'config',
        created_at TEXT NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        display_name TEXT NOT NULL,
        identity_id TEXT,
        blocked INTEGER NOT NULL DEFAULT 0,
        opted_out INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        call_id TEXT,
        reason TEXT,
        identity_id TEXT,
        joined_at TEXT,
        last_activity TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX sessions_by_meeting ON sessions(meeting_id, state);
    CREATE UNIQUE INDEX one_active_session ON sessions(user_id, meeting_id)
        WHERE state IN ('requested', 'joining', 'lobby', 'in_call');
    CREATE TABLE session_events (
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        reason TEXT,
        at TEXT NOT NULL
    );
    CREATE TABLE inbox (
        channel TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        answer TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (channel, provider_id)
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        direction TEXT NOT NULL,
        meeting_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id INTEGER,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        remote_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX outbox_due ON outbox(direction, state, meeting_id, seq);
    CREATE INDEX outbox_by_session ON outbox(session_id, state);
    CREATE TABLE seen_messages (
        meeting_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        version TEXT NOT NULL,
        PRIMARY KEY (meeting_id, message_id, version)
    );
    """,
    # 2: SMS: a meeting's own segment cap, carrier delivery reports, when a delivery was first tried (providers
    #    drop repeats only within a window from then), the per-number segment budget
    """
    ALTER TABLE meetings ADD COLUMN sms_segment_cap INTEGER;
    ALTER TABLE outbox ADD COLUMN report TEXT;
    ALTER TABLE outbox ADD COLUMN first_attempt_at TEXT;
    CREATE INDEX outbox_by_remote ON outbox(remote_id);
    CREATE TABLE sms_usage (
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        segments INTEGER NOT NULL
    );
    CREATE INDEX sms_usage_by_user ON sms_usage(user_id, at);
    """,
    # 3: one user's deliveries by direction and state: the outbound worker's page, and the per-user backlog
    #    counts that bound the outbox under overload
    """
    CREATE INDEX outbox_by_user ON outbox(user_id, direction, state, seq);
    """,
    # 4: provider ids by arrival: records older than the repeat retention are pruned
    """
    CREATE INDEX inbox_by_received ON inbox(received_at);
    """,
    # 5: a condition on a session in the call (chat_refused: the meeting's chat answers 403 while the call is
    #    connected) with the service's words, kept across a restart with the messages it holds
    """
    ALTER TABLE sessions ADD COLUMN condition TEXT;
    ALTER TABLE sessions ADD COLUMN condition_reason TEXT;
    """,
]
