"""The relay's decisions, pure: which rows go out in one send, what a failed try means, who gets a Teams message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..backoff import Backoff
from ..config import RelaySection
from ..errors import NotInCallError, PermanentError, ThrottledError, TransientError
from ..formatting import html_to_text, merge_texts, speaker_prefix, text_to_html
from ..models import (
    ChatMessageView,
    Delivery,
    DeliveryState,
    ExternalUser,
    IdentityMode,
    Meeting,
    Session,
    SessionState,
)

RETRY = Backoff(base_s=0.5, cap_s=60.0)
"""Between tries of a send or a delivery, and between failed reads of a thread."""
# ACS refuses a chat message over about 28 K characters ("Message size exceeded"): a merge stops short of it.
MAX_CHAT_CHARS = 28_000
# Re-read a little before the cursor: a message stored just before a newer one may become visible after it.
OVERLAP = timedelta(seconds=5)
MIN_PAUSE = 0.1
"""Of an interval: reads that take longer than the interval still leave the service this much of a pause."""
CHAT_TYPES = ("text", "html")
CHECK_KEY = "bridgeCheck"
"""In a message's metadata: a set-up check's test message (python -m bot doctor --join), relayed to nobody."""


# what a try's failure means --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """Try again at `at`; the row keeps `error` as its last one."""

    delay_s: float
    at: datetime
    error: str
    counted: bool = True
    """False: the provider throttled the try before doing anything, so it does not count as one."""


@dataclass(frozen=True)
class GiveUp:
    """The rows end failed with this reason."""

    reason: str


@dataclass(frozen=True)
class Hold:
    """The identity is not in the call: its messages wait, held, until it is back."""


def send_verdict(
    exc: TransientError | PermanentError, attempts: int, max_attempts: int, now: datetime
) -> Retry | GiveUp | Hold:
    """What becomes of a send into a meeting thread that failed on its `attempts`-th try."""
    if isinstance(exc, NotInCallError):
        return Hold()
    if isinstance(exc, PermanentError):
        return GiveUp(str(exc))
    if attempts >= max_attempts:
        return GiveUp(f"gave up after {attempts} attempts: {exc}")
    delay = RETRY.delay(attempts, exc.retry_after)
    return Retry(delay, now + timedelta(seconds=delay), str(exc))


def delivery_verdict(
    exc: TransientError | PermanentError, attempts: int, max_attempts: int, now: datetime
) -> Retry | GiveUp:
    """What becomes of a delivery to a channel that failed on its `attempts`-th try."""
    if isinstance(exc, PermanentError):
        return GiveUp(str(exc))
    # The provider asked us to wait and sent nothing: not a failed try. Counted, a number's send limit (ACS: 200
    # texts a minute) failed deliveries after a few seconds of waiting in a busy minute.
    free = isinstance(exc, ThrottledError)
    if not free and attempts >= max_attempts:
        return GiveUp(f"gave up after {attempts} attempts: {exc}")
    delay = RETRY.delay(attempts, exc.retry_after)
    return Retry(delay, now + timedelta(seconds=delay), str(exc), counted=not free)


def read_backoff(exc: TransientError | PermanentError, failures: int) -> float:
    """Seconds before reading a thread again after `failures` failed reads in a row."""
    return RETRY.delay(failures, exc.retry_after if isinstance(exc, TransientError) else None)


# the outbox's rows -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finish:
    """End a row without trying it: held (its session is on the way into the call) or failed with `error`."""

    state: DeliveryState
    error: str | None = None


@dataclass(frozen=True)
class Wait:
    """Nothing to do for `seconds`."""

    seconds: float


def due_in(head: Delivery, now: datetime) -> float | None:
    """Seconds until the oldest row may be tried again; None when it is due."""
    if head.next_attempt_at is not None and head.next_attempt_at > now:
        return (head.next_attempt_at - now).total_seconds()
    return None


def unsendable(meeting: Meeting | None, session: Session | None) -> Finish | None:
    """Why a message cannot go into its meeting's thread now; None when it can."""
    if meeting is None or session is None or session.identity_id is None:
        return Finish(DeliveryState.FAILED, "the meeting or session is gone")
    if session.state != SessionState.IN_CALL or meeting.thread_id is None:
        if session.state in (SessionState.JOINING, SessionState.LOBBY):
            return Finish(DeliveryState.HELD)
        return Finish(DeliveryState.FAILED, f"session is {session.state}")
    if session.condition is not None:
        return Finish(DeliveryState.HELD)  # in the call, but its chat is refused: held until that clears
    return None


def prefix_for(meeting: Meeting, user: ExternalUser | None, user_id: str) -> str | None:
    """The name a relayed message starts with: the sender's, when one identity speaks for everyone (relay mode)."""
    if meeting.identity_mode != IdentityMode.SHARED:
        return None
    return user.display_name if user is not None else user_id


def chat_html(batch: Sequence[Delivery], prefix: str | None) -> str:
    """The one chat message (HTML) that carries these rows into the thread."""
    texts = [str(r.body.get("text", "")) for r in batch]
    text = merge_texts(texts) if len(texts) > 1 else texts[0]
    return text_to_html(speaker_prefix(prefix, text) if prefix is not None else text)


def merges(head: Delivery, paced: bool, waiting: int, merge_backlog: int) -> bool:
    """Whether a backlog is building, so the head's sender's waiting messages go with it in one send: a retry (it
    takes again the rows merged with it last time), a thread the pacer held back, or a long queue."""
    return bool(head.attempts) or paced or waiting >= merge_backlog


def inbound_batch(
    head: Delivery, mine: Sequence[Delivery], prefix: str | None, max_chars: int = MAX_CHAT_CHARS
) -> list[Delivery]:
    """The head and, after it, its sender's waiting messages in the same session, passing over others' in between,
    so a burst from ten people under the thread's limit takes ten sends, not one per message. Nothing overtakes a
    message its sender could have answered: others' messages reach them only from the thread, once sent. Only rows
    attempted as often as the head join it, and the cut falls where the message would grow too long, so a retry
    re-forms this very batch: the lookup then finds them all in one message, or they are resent together."""
    batch = [head]
    for row in mine:
        if row.seq <= head.seq or row.meeting_id != head.meeting_id or row.session_id != head.session_id:
            continue
        if row.attempts != head.attempts or len(chat_html([*batch, row], prefix)) > max_chars:
            break
        batch.append(row)
    return batch


def undeliverable(head: Delivery, user: ExternalUser | None, has_channel: bool, meeting: Meeting | None) -> str | None:
    """Why a delivery to an external user fails without a try; None when it can go."""
    if user is None or not has_channel or (head.meeting_id and meeting is None):
        return "no user, meeting or channel for it"
    if user.opted_out and not head.body.get("always"):
        return "the user opted out"
    return None


def outbound_batch(rows: Sequence[Delivery], now: datetime, window_s: float) -> list[Delivery] | Wait:
    """The rows delivered together: with a batch window, a burst is combined into one delivery once it settles, but
    the oldest is never held for long (three windows). A retry re-forms the same batch: the rows tried together
    carry the same attempt count."""
    head = rows[0]
    if window_s <= 0:
        return [head]
    newest = max(r.created_at or now for r in rows)
    settle = window_s - (now - newest).total_seconds()
    if settle > 0 and (now - (head.created_at or now)).total_seconds() < 3 * window_s:
        return Wait(settle)
    batch = [head]
    for row in rows[1:]:
        if row.meeting_id != head.meeting_id or row.attempts != head.attempts:
            break
        batch.append(row)
    return batch


# a meeting's reader ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamsMessage:
    """A Teams message on its way out: one delivery of `kind` with `body` to each of `recipients`."""

    kind: str
    body: dict[str, object]
    recipients: list[Session]


def reader_of(meeting: Meeting, sessions: Sequence[Session]) -> str | None:
    """The identity that reads the thread: the meeting's own in relay mode, else the first one in the call."""
    relay = meeting.relay_identity if meeting.identity_mode == IdentityMode.SHARED else None
    return relay or sessions[0].identity_id


def start_cursor(meeting: Meeting, sessions: Sequence[Session]) -> datetime | None:
    """Where reading starts: the stored cursor, else when the first of those in the call joined."""
    if meeting.cursor:
        return datetime.fromisoformat(meeting.cursor)
    return min((s.joined_at for s in sessions if s.joined_at is not None), default=None)


def modified_at(message: ChatMessageView) -> datetime:
    return max(t for t in (message.created_on, message.edited_on, message.deleted_on) if t is not None)


def version_of(message: ChatMessageView) -> str:
    """With the id, names one state of a message: an edit or a delete is news again."""
    return message.version or modified_at(message).isoformat()


def relayable(message: ChatMessageView) -> bool:
    """Chat, not a system message (someone added, the topic changed) nor a set-up check's test message."""
    return message.type in CHAT_TYPES and CHECK_KEY not in message.metadata


def message_cursor(cursor: datetime | None, message: ChatMessageView) -> datetime:
    """The cursor stored with a message's fan-out: past it, less the overlap, never back."""
    moved = modified_at(message) - OVERLAP
    return max(cursor, moved) if cursor is not None else moved


def next_cursor(cursor: datetime | None, messages: Sequence[ChatMessageView], settled: datetime) -> datetime | None:
    """Where the cursor goes after a read that returned `messages`, ours and system ones included, so idle re-reads
    stay short; None when it stays. `settled`: the overlap before the read began. Whatever changed before it was
    visible to the read, so was in it: the cursor may move up to it, and a quiet thread's reads come back empty
    instead of re-reading its last messages on every poll. An empty read moves nothing (and costs no store write)."""
    if not messages:
        return None
    last = max(settled, *(message_cursor(cursor, m) for m in messages))
    return last if cursor is None or last > cursor else None


def teams_message(message: ChatMessageView, sessions: Sequence[Session], author: str | None) -> TeamsMessage:
    """What the users in the call get of a thread message. `author`: the external user who wrote it (relayed by
    us), who never gets it back; None for a Teams user's. Only those who joined before it was posted get it."""
    kind = "delete" if message.deleted_on else "edit" if message.edited_on else "message"
    body: dict[str, object] = {
        "messageId": message.id,
        "text": "" if kind == "delete" else html_to_text(message.content),
        "from": {"displayName": message.sender_display_name or "", "kind": "external" if author else "teams"},
        "sentAt": modified_at(message).isoformat(),
    }
    recipients = [
        s for s in sessions if s.joined_at is not None and s.joined_at <= message.created_on and s.user_id != author
    ]
    return TeamsMessage(kind, body, recipients)


def poll_pause(last_news: float | None, now: float, elapsed: float, settings: RelaySection) -> float:
    """Seconds until the next read: the active interval after recent news, else the idle one, counted from the
    start of this read (a message waits at most one interval for the read that finds it), yet never no pause."""
    idle = last_news is None or now - last_news > settings.idle_after_s
    interval = settings.poll_idle_s if idle else settings.poll_active_s
    return max(interval - elapsed, interval * MIN_PAUSE)
