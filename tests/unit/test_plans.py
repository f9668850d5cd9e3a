"""The relay's decisions: merging rows into one send, retry verdicts, who gets a Teams message, the next cursor."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import (
    AuthError,
    NotFoundError,
    NotInCallError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from bot.formatting import text_to_html
from bot.models import (
    ChatMessageView,
    Delivery,
    DeliveryState,
    Direction,
    ExternalUser,
    IdentityMode,
    Meeting,
    Session,
    SessionState,
)
from bot.relay import plans
from bot.relay.plans import MAX_CHAT_CHARS, OVERLAP, GiveUp, Hold, Retry, Wait

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def row(
    seq: int,
    text: str = "hi",
    *,
    user: str = "sms:+15550100",
    session: int | None = 1,
    meeting: str = "m1",
    attempts: int = 0,
    age_s: float = 60.0,
    **fields: object,
) -> Delivery:
    created = NOW - timedelta(seconds=age_s)
    return Delivery(
        id=f"d{seq}",
        seq=seq,
        direction=Direction.INBOUND,
        meeting_id=meeting,
        user_id=user,
        kind="message",
        body={"text": text},
        state=DeliveryState.PENDING,
        attempts=attempts,
        session_id=session,
        created_at=created,
        **fields,  # type: ignore[arg-type]
    )


def meeting(mode: IdentityMode = IdentityMode.PER_USER, **fields: object) -> Meeting:
    base = Meeting("m1", "123456", "Sync", None, "19:thread", None, None, None, mode, "{name} (SMS)", ["*"])
    return replace(base, **fields)  # type: ignore[arg-type]


def session(
    user: str = "sms:+15550100",
    state: SessionState = SessionState.IN_CALL,
    joined_s_ago: float | None = 600.0,
    **fields: object,
) -> Session:
    joined = NOW - timedelta(seconds=joined_s_ago) if joined_s_ago is not None else None
    base = Session(1, user, "m1", state, joined_at=joined, identity_id=f"8:acs:{user}")
    return replace(base, **fields)  # type: ignore[arg-type]


def message(
    created_s_ago: float = 10.0,
    *,
    kind: str = "html",
    content: str = "<p>hello</p>",
    edited_s_ago: float | None = None,
    deleted_s_ago: float | None = None,
    version: str = "",
    **fields: object,
) -> ChatMessageView:
    def ago(s: float | None) -> datetime | None:
        return NOW - timedelta(seconds=s) if s is not None else None

    created = NOW - timedelta(seconds=created_s_ago)
    return ChatMessageView(
        id=fields.pop("id", "msg1"),  # type: ignore[arg-type]
        type=kind,
        sequence_id=1,
        created_on=created,
        content=content,
        sender_id="8:orgid:bob",
        sender_display_name="Bob",
        edited_on=ago(edited_s_ago),
        deleted_on=ago(deleted_s_ago),
        version=version,
        **fields,  # type: ignore[arg-type]
    )


# retry verdicts ----------------------------------------------------------------------------------------------------


def test_a_send_whose_identity_left_the_call_is_held() -> None:
    assert plans.send_verdict(NotInCallError("403"), 1, 8, NOW) == Hold()


@pytest.mark.parametrize("error", [PermanentError("bad request"), AuthError("token"), NotFoundError("no thread")])
def test_a_permanent_error_gives_up_at_once_with_its_reason(error: PermanentError) -> None:
    assert plans.send_verdict(error, 1, 8, NOW) == GiveUp(str(error))
    assert plans.delivery_verdict(error, 1, 8, NOW) == GiveUp(str(error))


def test_a_transient_error_is_retried_after_the_backoff() -> None:
    verdict = plans.send_verdict(TransientError("503"), 3, 8, NOW)
    assert verdict == Retry(2.0, NOW + timedelta(seconds=2), "503")
    assert plans.delivery_verdict(TransientError("503"), 3, 8, NOW) == verdict


def test_the_peers_retry_after_is_the_wait() -> None:
    verdict = plans.send_verdict(ThrottledError("429", retry_after=7.0), 6, 8, NOW)
    assert isinstance(verdict, Retry) and verdict.delay_s == 7.0 and verdict.at == NOW + timedelta(seconds=7)


def test_the_last_allowed_try_gives_up_saying_how_many() -> None:
    assert plans.send_verdict(TransientError("503"), 8, 8, NOW) == GiveUp("gave up after 8 attempts: 503")
    assert plans.delivery_verdict(TransientError("503"), 8, 8, NOW) == GiveUp("gave up after 8 attempts: 503")
    assert isinstance(plans.send_verdict(TransientError("503"), 7, 8, NOW), Retry)


def test_a_throttled_send_into_teams_counts_but_a_throttled_delivery_does_not() -> None:
    # Into a thread every try counts, throttled or not: the limit on attempts holds.
    assert plans.send_verdict(ThrottledError("429"), 8, 8, NOW) == GiveUp("gave up after 8 attempts: 429")
    # Out to a provider that paces our texts, a throttled try did nothing and never uses up the attempts.
    verdict = plans.delivery_verdict(ThrottledError("429", retry_after=3.0), 20, 8, NOW)
    assert verdict == Retry(3.0, NOW + timedelta(seconds=3), "429", counted=False)
    counted = plans.delivery_verdict(TransientError("503"), 1, 8, NOW)
    assert isinstance(counted, Retry) and counted.counted


def test_a_failed_read_backs_off_honouring_only_a_transient_errors_wait() -> None:
    assert plans.read_backoff(TransientError("503"), 1) == 0.5
    assert plans.read_backoff(TransientError("503"), 4) == 4.0
    assert plans.read_backoff(ThrottledError("429", retry_after=9.0), 4) == 9.0
    assert plans.read_backoff(PermanentError("token refused"), 2) == 1.0


@given(
    st.integers(min_value=1, max_value=100),
    st.integers(min_value=1, max_value=100),
    st.none() | st.floats(min_value=0, max_value=3600),
    st.booleans(),
)
def test_every_transient_verdict_either_gives_up_or_waits_a_bounded_time(
    attempts: int, max_attempts: int, retry_after: float | None, throttled: bool
) -> None:
    error = ThrottledError("429", retry_after) if throttled else TransientError("503", retry_after)
    for verdict in (
        plans.send_verdict(error, attempts, max_attempts, NOW),
        plans.delivery_verdict(error, attempts, max_attempts, NOW),
    ):
        if isinstance(verdict, Retry):
            assert 0 <= verdict.delay_s <= 3600 and verdict.at == NOW + timedelta(seconds=verdict.delay_s)
        else:
            assert isinstance(verdict, GiveUp) and attempts >= max_attempts


# rows that cannot go now ---------------------------------------------------------------------------------------


def test_a_head_waiting_for_its_retry_is_due_later() -> None:
    assert plans.due_in(row(1), NOW) is None
    assert plans.due_in(row(1, next_attempt_at=NOW), NOW) is None
    assert plans.due_in(row(1, next_attempt_at=NOW - timedelta(seconds=1)), NOW) is None
    assert plans.due_in(row(1, next_attempt_at=NOW + timedelta(seconds=2.5)), NOW) == 2.5


def test_a_message_whose_meeting_or_session_is_gone_fails() -> None:
    gone = plans.Finish(DeliveryState.FAILED, "the meeting or session is gone")
    assert plans.unsendable(None, session()) == gone
    assert plans.unsendable(meeting(), None) == gone
    assert plans.unsendable(meeting(), session(identity_id=None)) == gone


@pytest.mark.parametrize("state", [SessionState.JOINING, SessionState.LOBBY])
def test_a_message_from_a_session_on_its_way_in_is_held(state: SessionState) -> None:
    assert plans.unsendable(meeting(), session(state=state)) == plans.Finish(DeliveryState.HELD)


@pytest.mark.parametrize("state", [SessionState.LEFT, SessionState.ENDED, SessionState.FAILED, SessionState.REQUESTED])
def test_a_message_from_a_session_that_is_over_fails_naming_its_state(state: SessionState) -> None:
    assert plans.unsendable(meeting(), session(state=state)) == plans.Finish(
        DeliveryState.FAILED, f"session is {state}"
    )


def test_a_message_from_a_session_in_the_call_can_go_once_the_thread_is_known() -> None:
    assert plans.unsendable(meeting(), session()) is None
    assert plans.unsendable(meeting(thread_id=None), session()) == plans.Finish(
        DeliveryState.FAILED, "session is in_call"
    )


# what one send carries -----------------------------------------------------------------------------------------


def test_only_relay_mode_prefixes_the_senders_name() -> None:
    ann = ExternalUser("sms:+15550100", "sms", "Ann")
    assert plans.prefix_for(meeting(), ann, ann.id) is None
    assert plans.prefix_for(meeting(IdentityMode.SHARED), ann, ann.id) == "Ann"
    assert plans.prefix_for(meeting(IdentityMode.SHARED), None, "sms:+15550100") == "sms:+15550100"


def test_a_send_is_the_html_of_its_rows_one_per_line() -> None:
    assert plans.chat_html([row(1, "a < b")], None) == text_to_html("a < b")
    assert plans.chat_html([row(1, "one"), row(2, " "), row(3, "two")], None) == text_to_html("one\ntwo")
    assert plans.chat_html([row(1, "one"), row(2, "two")], "Ann") == text_to_html("Ann: one\ntwo")


def test_a_backlog_builds_on_a_retry_a_paced_thread_or_a_long_queue() -> None:
    assert not plans.merges(row(1), paced=False, waiting=2, merge_backlog=3)
    assert plans.merges(row(1, attempts=1), paced=False, waiting=1, merge_backlog=3)
    assert plans.merges(row(1), paced=True, waiting=1, merge_backlog=3)
    assert plans.merges(row(1), paced=False, waiting=3, merge_backlog=3)


def test_a_merge_takes_the_senders_later_rows_and_passes_over_others() -> None:
    head = row(1, "a")
    mine = [head, row(3, "b"), row(5, "c", session=2), row(6, "d", meeting="m2"), row(7, "e")]
    # Row 2 and 4 are someone else's: not in `mine` at all, passed over; another session's or meeting's skipped.
    assert [r.id for r in plans.inbound_batch(head, mine, None)] == ["d1", "d3", "d7"]


def test_a_merge_stops_at_a_row_tried_a_different_number_of_times() -> None:
    head = row(1, attempts=2)
    mine = [head, row(2, attempts=2), row(3, attempts=0), row(4, attempts=2)]
    assert [r.id for r in plans.inbound_batch(head, mine, None)] == ["d1", "d2"]


def test_a_merge_stops_short_of_the_chat_message_limit() -> None:
    half = "x" * (MAX_CHAT_CHARS // 2 - 10)
    head = row(1, half)
    batch = plans.inbound_batch(head, [head, row(2, half), row(3, half), row(4, "short")], None)
    assert [r.id for r in batch] == ["d1", "d2"]
    assert len(plans.chat_html(batch, None)) <= MAX_CHAT_CHARS


texts = st.text(alphabet="ab <&>\n", max_size=40)
rows_of_one_sender = st.lists(
    st.tuples(texts, st.integers(1, 2), st.integers(0, 2), st.sampled_from(["m1", "m2"])), min_size=1, max_size=12
)


@given(rows_of_one_sender, st.integers(min_value=50, max_value=400))
def test_a_retry_re_forms_the_very_batch_it_tried(spec: list[tuple[str, int, int, str]], limit: int) -> None:
    """The promise that keeps a merged message from going out twice: after a failed try (each row in the batch
    attempted once more), the same rows form the same batch, and its lookup by the head's id finds them all. Rows
    are tried oldest first, so a later row was never tried more often than an earlier one."""
    tries = sorted((a for _, _, a, _ in spec), reverse=True)
    mine = [row(i + 1, t, session=s, attempts=tries[i], meeting=m) for i, (t, s, _, m) in enumerate(spec)]
    head = mine[0]
    batch = plans.inbound_batch(head, mine, "Ann", limit)
    tried = {r.id for r in batch}
    after = [replace(r, attempts=r.attempts + 1) if r.id in tried else r for r in mine]
    again = plans.inbound_batch(after[0], after, "Ann", limit)
    assert [r.id for r in again] == [r.id for r in batch]
    assert batch[0] is head and [r.seq for r in batch] == sorted(r.seq for r in batch)
    assert all(r.session_id == head.session_id and r.attempts == head.attempts for r in batch)
    assert len(batch) == 1 or len(plans.chat_html(batch, "Ann")) <= limit


# deliveries out to external users ------------------------------------------------------------------------------


def test_a_delivery_with_nobody_or_no_channel_to_take_it_fails() -> None:
    ann = ExternalUser("sms:+15550100", "sms", "Ann")
    nowhere = "no user, meeting or channel for it"
    assert plans.undeliverable(row(1), None, True, meeting()) == nowhere
    assert plans.undeliverable(row(1), ann, False, meeting()) == nowhere
    assert plans.undeliverable(row(1), ann, True, None) == nowhere
    assert plans.undeliverable(row(1, meeting=""), ann, True, None) is None  # a notice about no meeting
    assert plans.undeliverable(row(1), ann, True, meeting()) is None


def test_an_opted_out_user_gets_only_what_must_always_go() -> None:
    out = ExternalUser("sms:+15550100", "sms", "Ann", opted_out=True)
    assert plans.undeliverable(row(1), out, True, meeting()) == "the user opted out"
    confirm = replace(row(1), body={"text": "You are unsubscribed.", "always": True})
    assert plans.undeliverable(confirm, out, True, meeting()) is None


def ids(batch: list[Delivery] | Wait) -> list[str]:
    assert isinstance(batch, list), batch
    return [r.id for r in batch]


def test_without_a_batch_window_each_delivery_goes_alone() -> None:
    assert plans.outbound_batch([row(1), row(2)], NOW, 0.0) == [row(1)]


def test_a_burst_waits_to_settle_then_goes_as_one() -> None:
    burst = [row(1, age_s=1.0), row(2, age_s=0.5)]
    assert plans.outbound_batch(burst, NOW, 2.0) == Wait(1.5)
    settled = [row(1, age_s=5.0), row(2, age_s=3.0), row(3, meeting="m2", age_s=3.0), row(4, age_s=3.0)]
    assert ids(plans.outbound_batch(settled, NOW, 2.0)) == ["d1", "d2"]  # up to the other meeting's


def test_a_burst_that_never_settles_does_not_hold_the_oldest_past_three_windows() -> None:
    busy = [row(1, age_s=7.0), row(2, age_s=0.1)]
    assert ids(plans.outbound_batch(busy, NOW, 2.0)) == ["d1", "d2"]


def test_a_retried_delivery_goes_with_the_rows_tried_with_it() -> None:
    rows = [row(1, attempts=1, age_s=30), row(2, attempts=1, age_s=30), row(3, attempts=0, age_s=30)]
    assert ids(plans.outbound_batch(rows, NOW, 2.0)) == ["d1", "d2"]


# a meeting's reader --------------------------------------------------------------------------------------------


def test_the_reader_is_the_meetings_own_identity_in_relay_mode_else_the_first_in_the_call() -> None:
    ann, bob = session("sms:+1"), session("sms:+2")
    assert plans.reader_of(meeting(), [ann, bob]) == ann.identity_id
    assert plans.reader_of(meeting(IdentityMode.SHARED, relay_identity="8:acs:relay"), [ann]) == "8:acs:relay"
    assert plans.reader_of(meeting(IdentityMode.SHARED), [bob]) == bob.identity_id
    assert plans.reader_of(meeting(relay_identity="8:acs:relay"), [ann]) == ann.identity_id


def test_reading_starts_at_the_stored_cursor_else_at_the_first_join() -> None:
    stored = (NOW - timedelta(minutes=3)).isoformat()
    early, late = session(joined_s_ago=900), session(joined_s_ago=60)
    assert plans.start_cursor(meeting(cursor=stored), [late]) == NOW - timedelta(minutes=3)
    assert plans.start_cursor(meeting(), [late, early, session(joined_s_ago=None)]) == NOW - timedelta(seconds=900)
    assert plans.start_cursor(meeting(), [session(joined_s_ago=None)]) is None


def test_an_edit_or_a_delete_is_a_new_version_of_a_message() -> None:
    posted = message(30)
    edited = message(30, edited_s_ago=5)
    assert plans.modified_at(edited) == NOW - timedelta(seconds=5)
    assert plans.version_of(posted) != plans.version_of(edited)
    assert plans.version_of(message(30, version="1714564800")) == "1714564800"
    assert plans.relayable(posted) and plans.relayable(message(kind="text"))
    assert not plans.relayable(message(kind="participantAdded"))


def test_a_teams_message_goes_to_those_in_the_call_when_it_was_posted() -> None:
    posted = message(created_s_ago=100)
    before, after, never = session("sms:+1", joined_s_ago=200), session("sms:+2", joined_s_ago=50), session("sms:+3")
    never = replace(never, joined_at=None)
    out = plans.teams_message(posted, [before, after, never], None)
    assert out.recipients == [before] and out.kind == "message"
    assert out.body == {
        "messageId": "msg1",
        "text": "hello",
        "from": {"displayName": "Bob", "kind": "teams"},
        "sentAt": (NOW - timedelta(seconds=100)).isoformat(),
    }


def test_a_relayed_message_reaches_the_others_but_not_its_author() -> None:
    ann, bob = session("sms:+1"), session("sms:+2")
    out = plans.teams_message(message(), [ann, bob], author="sms:+1")
    assert out.recipients == [bob] and out.body["from"] == {"displayName": "Bob", "kind": "external"}


def test_edits_and_deletes_say_what_they_are() -> None:
    edit = plans.teams_message(message(60, content="<p>fixed</p>", edited_s_ago=5), [session()], None)
    assert edit.kind == "edit" and edit.body["text"] == "fixed"
    assert edit.body["sentAt"] == (NOW - timedelta(seconds=5)).isoformat()
    gone = plans.teams_message(message(60, edited_s_ago=30, deleted_s_ago=5), [session()], None)
    assert gone.kind == "delete" and gone.body["text"] == ""


def test_a_messages_cursor_moves_past_it_less_the_overlap_and_never_back() -> None:
    posted = message(created_s_ago=10)
    assert plans.message_cursor(None, posted) == NOW - timedelta(seconds=10) - OVERLAP
    assert plans.message_cursor(NOW - timedelta(minutes=5), posted) == NOW - timedelta(seconds=10) - OVERLAP
    assert plans.message_cursor(NOW, posted) == NOW


def test_after_a_read_the_cursor_moves_to_what_the_read_surely_saw() -> None:
    cursor, settled = NOW - timedelta(minutes=5), NOW - OVERLAP
    assert plans.next_cursor(cursor, [], settled) is None  # an empty read writes nothing
    assert plans.next_cursor(cursor, [message(120)], settled) == settled
    assert plans.next_cursor(None, [message(120)], settled) == settled
    newer = message(created_s_ago=-30)  # posted after the read began: the service's clock runs ahead
    assert plans.next_cursor(cursor, [message(120), newer], settled) == NOW + timedelta(seconds=30) - OVERLAP
    assert plans.next_cursor(NOW, [message(120)], settled) is None  # never back


@given(
    st.none() | st.integers(-600, 600),
    st.lists(st.integers(-600, 600), max_size=6),
    st.integers(-600, 600),
)
def test_the_cursor_never_moves_back(cursor_s: int | None, posted_s: list[int], settled_s: int) -> None:
    cursor = NOW + timedelta(seconds=cursor_s) if cursor_s is not None else None
    messages = [message(created_s_ago=-s, id=f"m{i}") for i, s in enumerate(posted_s)]
    settled = NOW + timedelta(seconds=settled_s)
    moved = plans.next_cursor(cursor, messages, settled)
    if not messages:
        assert moved is None
    elif moved is not None:
        assert (cursor is None or moved > cursor) and moved >= settled
        assert all(moved >= plans.message_cursor(cursor, m) for m in messages)
    else:
        assert cursor is not None and cursor >= settled
