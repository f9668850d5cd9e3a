"""The store on both backends (SQLite, PostgreSQL): idempotent intake, outbound dedupe, sessions and the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from bot.models import DeliveryState, Direction, IdentityMode, Meeting, SessionState
from bot.store import NewDelivery, Store, StoreConflictError, StoreUrl, store_for, utcnow
from bot.store.outbox import BacklogFull

S = SessionState
D = DeliveryState


@pytest.fixture
async def store(store_url: StoreUrl) -> AsyncIterator[Store]:
    st = await store_for(store_url).open()
    try:
        yield st
    finally:
        await st.close()


def meeting(mid: str = "m-1", code: str = "123456") -> Meeting:
    return Meeting(
        id=mid,
        code=code,
        name="Weekly sync",
        link="https://teams.microsoft.com/l/meetup-join/x",
        thread_id=f"19:meeting_{mid}@thread.v2",
        join_meeting_id=None,
        passcode=None,
        organizer_id=None,
        identity_mode=IdentityMode.PER_USER,
        display_name_template="{name} ({channel})",
        allow=["*"],
    )


def delivery(
    did: str,
    *,
    user: str = "webhook:app/ann",
    mid: str = "m-1",
    direction: Direction = Direction.INBOUND,
    state: DeliveryState = D.PENDING,
    session_id: int | None = None,
    kind: str = "message",
) -> NewDelivery:
    return NewDelivery(
        id=did,
        direction=direction,
        meeting_id=mid,
        user_id=user,
        kind=kind,
        body={"text": f"text of {did}"},
        state=state,
        session_id=session_id,
    )


async def setup(store: Store, *users: str, mid: str = "m-1") -> None:
    await store.upsert_meeting(meeting(mid))
    for user in users or ("webhook:app/ann",):
        await store.upsert_user(user, "webhook", None)


async def scalar(store: Store, sql: str, *args: Any) -> Any:
    row = await store._one(sql, args)
    assert row is not None
    return row[0]


# inbound intake ---------------------------------------------------------------------------------------------


async def test_record_inbound_is_idempotent(store: Store) -> None:
    await setup(store)
    first = await store.record_inbound("webhook:app", "msg_1", 202, {"id": "d-1", "status": "queued"}, delivery("d-1"))
    assert first == (202, {"id": "d-1", "status": "queued"}, True)
    # The repeat is answered with the first answer, whatever it would have said now, and stores nothing new.
    again = await store.record_inbound("webhook:app", "msg_1", 409, {"error": "other"}, delivery("d-2"))
    assert again == (202, {"id": "d-1", "status": "queued"}, False)
    assert await store.inbox_answer("webhook:app", "msg_1") == (202, {"id": "d-1", "status": "queued"})
    assert [d.id for d in await store.deliveries()] == ["d-1"]
    # The same provider id on another channel is another message.
    other = await store.record_inbound("sms", "msg_1", 202, {"id": "d-3"}, delivery("d-3"))
    assert other[2] is True
    assert await store.inbox_answer("webhook:app", "msg_unknown") is None


async def test_record_inbound_without_a_delivery_keeps_the_answer(store: Store) -> None:
    assert (await store.record_inbound("webhook:app", "m", 403, {"error": "not_allowed"}, None))[2]
    assert await store.record_inbound("webhook:app", "m", 202, {}, delivery("d")) == (
        403,
        {"error": "not_allowed"},
        False,
    )
    assert await store.deliveries() == []


async def test_concurrent_identical_inbound_makes_one_row(store: Store) -> None:
    await setup(store)
    results = await asyncio.gather(
        *(store.record_inbound("webhook:app", "msg_x", 202, {"id": f"d-{i}"}, delivery(f"d-{i}")) for i in range(20))
    )
    assert sum(1 for *_, fresh in results if fresh) == 1
    assert len({str(answer) for _, answer, _ in results}) == 1
    assert len(await store.deliveries()) == 1
    assert await scalar(store, "SELECT COUNT(*) FROM inbox") == 1


async def test_concurrent_inbound_through_two_stores_on_one_database_makes_one_row(store_url: StoreUrl) -> None:
    # Two stores on one database: two processes sharing a SQLite file, or two bridge instances on one PostgreSQL.
    a, b = await store_for(store_url).open(), await store_for(store_url).open()
    try:
        await setup(a)
        calls = [
            st.record_inbound("webhook:app", "msg_y", 202, {"id": f"d-{i}"}, delivery(f"d-{i}"), max_meeting=100)
            for i, st in enumerate([a, b] * 10)
        ]
        results = await asyncio.gather(*calls)
        assert sum(1 for *_, fresh in results if fresh) == 1
        assert len({str(answer) for _, answer, _ in results}) == 1
        assert len(await a.deliveries()) == 1 and len(await b.deliveries()) == 1
    finally:
        await a.close()
        await b.close()


async def test_the_backlog_bound_holds_for_concurrent_intake_through_two_stores(store_url: StoreUrl) -> None:
    # Counted inside the storing transaction: however the requests interleave across stores (processes), the
    # meeting never holds more than its bound.
    a, b = await store_for(store_url).open(), await store_for(store_url).open()
    try:
        await setup(a)
        calls = [
            st.record_inbound("webhook:app", f"msg_{i}", 202, {}, delivery(f"d-{i}"), max_meeting=5)
            for i, st in enumerate([a, b] * 10)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(1 for r in results if isinstance(r, BacklogFull)) == 15
        assert len(await a.pending(Direction.INBOUND, "meeting_id", "m-1")) == 5
    finally:
        await a.close()
        await b.close()


# outbound fan-out -------------------------------------------------------------------------------------------


async def test_record_outbound_dedupes_by_message_and_version_and_advances_the_cursor(store: Store) -> None:
    await setup(store, "webhook:app/ann", "webhook:app/bob")
    out = Direction.OUTBOUND

    def fan(tag: str) -> list[NewDelivery]:
        return [delivery(f"{tag}-ann", direction=out), delivery(f"{tag}-bob", user="webhook:app/bob", direction=out)]

    assert await store.record_outbound("m-1", "1001", "v1", fan("a"), cursor="2026-01-01T10:00:00+00:00")
    meeting_ = await store.get_meeting("m-1")
    assert meeting_ is not None and meeting_.cursor == "2026-01-01T10:00:00+00:00"
    # The same message and version again: nothing new, but the cursor still moves on.
    assert not await store.record_outbound("m-1", "1001", "v1", fan("b"), cursor="2026-01-01T10:00:05+00:00")
    meeting_ = await store.get_meeting("m-1")
    assert meeting_ is not None and meeting_.cursor == "2026-01-01T10:00:05+00:00"
    # An edit is a new version of the same message; the same id in another meeting is another message.
    assert await store.record_outbound("m-1", "1001", "v2", fan("c"))
    await store.upsert_meeting(meeting("m-2", "654321"))
    assert await store.record_outbound("m-2", "1001", "v1", [delivery("d-m2", mid="m-2", direction=out)])
    ids = [d.id for d in await store.deliveries(direction=out)]
    assert ids == ["a-ann", "a-bob", "c-ann", "c-bob", "d-m2"]
    # Without a cursor the stored one is left alone.
    meeting_ = await store.get_meeting("m-1")
    assert meeting_ is not None and meeting_.cursor == "2026-01-01T10:00:05+00:00"


async def test_record_outbound_is_one_transaction(store: Store) -> None:
    await setup(store)
    await store.add_deliveries([delivery("taken", direction=Direction.OUTBOUND)])
    with pytest.raises(StoreConflictError):
        await store.record_outbound(
            "m-1", "2002", "v1", [delivery("fresh"), delivery("taken")], cursor="2026-02-02T00:00:00+00:00"
        )
    # Neither the cursor, nor the seen mark, nor the first row survived: the message will be read again.
    meeting_ = await store.get_meeting("m-1")
    assert meeting_ is not None and meeting_.cursor is None
    assert await store.get_delivery("fresh") is None
    assert await store.record_outbound("m-1", "2002", "v1", [delivery("fresh")])


# sessions ---------------------------------------------------------------------------------------------------


async def test_one_active_session_per_user_and_meeting(store: Store) -> None:
    await setup(store, "webhook:app/ann", "webhook:app/bob")
    await store.upsert_meeting(meeting("m-2", "654321"))
    first = await store.create_session("webhook:app/ann", "m-1", "8:acs:ann")
    assert first.state == S.REQUESTED and first.identity_id == "8:acs:ann"
    with pytest.raises(StoreConflictError):
        await store.create_session("webhook:app/ann", "m-1", "8:acs:ann")
    # Other users and other meetings are independent.
    await store.create_session("webhook:app/bob", "m-1", None)
    await store.create_session("webhook:app/ann", "m-2", None)
    # Once the session is over, a new one may start; the old one stays as history.
    for state in (S.JOINING, S.LOBBY, S.IN_CALL):
        await store.set_session_state(first.id, state)
        with pytest.raises(StoreConflictError):
            await store.create_session("webhook:app/ann", "m-1", None)
    await store.set_session_state(first.id, S.LEFT, "user")
    second = await store.create_session("webhook:app/ann", "m-1", None)
    active = await store.active_session("webhook:app/ann", "m-1")
    assert active is not None and active.id == second.id != first.id
    assert [s.id for s in await store.sessions("m-1", [S.LEFT])] == [first.id]
    assert len(await store.sessions()) == 4


async def test_current_session_is_the_latest_active_one_in_any_meeting(store: Store) -> None:
    await setup(store, "sms:+15550100")
    await store.upsert_meeting(meeting("m-2", "654321"))
    assert await store.current_session("sms:+15550100") is None
    first = await store.create_session("sms:+15550100", "m-1", None)
    second = await store.create_session("sms:+15550100", "m-2", None)
    current = await store.current_session("sms:+15550100")
    assert current is not None and current.id == second.id
    await store.set_session_state(second.id, S.LEFT, "user")
    current = await store.current_session("sms:+15550100")
    assert current is not None and current.id == first.id
    await store.set_session_state(first.id, S.ENDED)
    assert await store.current_session("sms:+15550100") is None


async def test_set_session_state_writes_an_event_per_transition(store: Store) -> None:
    await setup(store)
    session = await store.create_session("webhook:app/ann", "m-1", None)
    joined = utcnow()
    await store.set_session_state(session.id, S.JOINING, call_id="call-1")
    await store.set_session_state(session.id, S.LOBBY)
    await store.set_session_state(session.id, S.IN_CALL, joined_at=joined)
    await store.set_session_state(session.id, S.LEFT, "removed")
    assert await store.session_events(session.id) == [
        ("requested", None),
        ("joining", None),
        ("lobby", None),
        ("in_call", None),
        ("left", "removed"),
    ]
    stored = await store.get_session(session.id)
    assert stored is not None
    assert stored.state == S.LEFT and stored.reason == "removed"
    assert stored.call_id == "call-1"  # kept when a later transition does not name one
    assert stored.joined_at == joined
    assert await store.active_session("webhook:app/ann", "m-1") is None


async def test_held_messages_are_released_on_admission(store: Store) -> None:
    await setup(store)
    session = await store.create_session("webhook:app/ann", "m-1", None)
    await store.add_deliveries([delivery(f"h{i}", state=D.HELD, session_id=session.id) for i in range(3)])
    assert await store.count_held(session.id) == 3
    assert await store.outbox_depth() == {"in": 3}
    assert await store.pending(Direction.INBOUND, "meeting_id", "m-1") == []
    notice = delivery("n-in-call", direction=Direction.OUTBOUND, kind="notice", session_id=session.id)
    await store.set_session_state(session.id, S.IN_CALL, notices=[notice], held=D.PENDING)
    assert await store.count_held(session.id) == 0
    pending = await store.pending(Direction.INBOUND, "meeting_id", "m-1")
    assert [d.id for d in pending] == ["h0", "h1", "h2"]
    assert all(d.last_error is None for d in pending)
    sent_notice = await store.get_delivery("n-in-call")
    assert sent_notice is not None and sent_notice.kind == "notice" and sent_notice.state == D.PENDING


async def test_held_messages_fail_with_the_reason(store: Store) -> None:
    await setup(store, "webhook:app/ann", "webhook:app/bob")
    session = await store.create_session("webhook:app/ann", "m-1", None)
    other = await store.create_session("webhook:app/bob", "m-1", None)
    await store.add_deliveries([delivery(f"h{i}", state=D.HELD, session_id=session.id) for i in range(2)])
    await store.add_deliveries([delivery("bob-held", user="webhook:app/bob", state=D.HELD, session_id=other.id)])
    await store.set_session_state(session.id, S.ENDED, "the meeting has ended", held=D.FAILED)
    failed = await store.deliveries(state=D.FAILED)
    assert [(d.id, d.last_error) for d in failed] == [("h0", "the meeting has ended"), ("h1", "the meeting has ended")]
    # Only that session's rows: the other user's held message is untouched.
    bob = await store.get_delivery("bob-held")
    assert bob is not None and bob.state == D.HELD
    # Without `held`, held rows are left as they are.
    await store.set_session_state(other.id, S.JOINING)
    assert await store.count_held(other.id) == 1


async def test_a_transition_and_its_notices_are_one_transaction(store: Store) -> None:
    await setup(store)
    session = await store.create_session("webhook:app/ann", "m-1", None)
    await store.add_deliveries([delivery("dup"), delivery("h", state=D.HELD, session_id=session.id)])
    with pytest.raises(StoreConflictError):
        await store.set_session_state(session.id, S.LOBBY, notices=[delivery("dup")], held=D.PENDING)
    stored = await store.get_session(session.id)
    assert stored is not None and stored.state == S.REQUESTED
    assert await store.session_events(session.id) == [("requested", None)]
    assert await store.count_held(session.id) == 1
    # The store still works after the rollback.
    await store.set_session_state(session.id, S.JOINING, notices=[delivery("n1", kind="notice")])
    assert await store.get_delivery("n1") is not None


async def test_release_held_and_touch(store: Store) -> None:
    await setup(store)
    session = await store.create_session("webhook:app/ann", "m-1", None)
    await store.add_deliveries([delivery("h1", state=D.HELD, session_id=session.id)])
    assert await store.release_held(session.id) == 1
    assert await store.release_held(session.id) == 0
    held = await store.get_session(session.id)
    assert held is not None
    before = held.last_activity
    await asyncio.sleep(0.001)
    await store.touch_session(session.id)
    touched = await store.get_session(session.id)
    assert touched is not None
    after = touched.last_activity
    assert before is not None and after is not None and after > before


# the outbox -------------------------------------------------------------------------------------------------


async def test_pending_is_ordered_by_seq_and_finish_ends_rows(store: Store) -> None:
    await setup(store, "webhook:app/ann", "webhook:app/bob")
    # Ids deliberately not in alphabetical order: seq (insertion order) decides.
    await store.add_deliveries([delivery("z"), delivery("a"), delivery("m")])
    await store.add_deliveries([delivery("b", user="webhook:app/bob")])
    pending = await store.pending(Direction.INBOUND, "meeting_id", "m-1")
    assert [d.id for d in pending] == ["z", "a", "m", "b"]
    assert [d.seq for d in pending] == sorted(d.seq for d in pending)
    assert [d.id for d in await store.pending(Direction.INBOUND, "meeting_id", "m-1", limit=2)] == ["z", "a"]
    assert [d.id for d in await store.pending(Direction.INBOUND, "user_id", "webhook:app/bob")] == ["b"]
    assert await store.pending(Direction.OUTBOUND, "meeting_id", "m-1") == []
    assert sorted(await store.pending_keys(Direction.INBOUND, "user_id")) == ["webhook:app/ann", "webhook:app/bob"]
    with pytest.raises(ValueError):
        await store.pending(Direction.INBOUND, "state; DROP TABLE outbox", "x")

    await store.mark_attempt(["z", "a"])
    await store.mark_attempt(["z"])
    retry_at = utcnow() + timedelta(seconds=30)
    await store.finish(["z"], D.PENDING, error="ACS answered 503", next_attempt_at=retry_at)
    await store.finish(["a", "m"], D.DELIVERED, remote_id="1700000000001")
    z, a = await store.get_delivery("z"), await store.get_delivery("a")
    assert z is not None and (z.state, z.attempts, z.last_error, z.next_attempt_at) == (
        D.PENDING,
        2,
        "ACS answered 503",
        retry_at,
    )
    assert a is not None and (a.state, a.attempts, a.remote_id, a.last_error) == (D.DELIVERED, 1, "1700000000001", None)
    assert [d.id for d in await store.pending(Direction.INBOUND, "meeting_id", "m-1")] == ["z", "b"]
    # A later finish keeps the remote id it already had.
    await store.finish(["a"], D.FAILED, error="gone")
    a = await store.get_delivery("a")
    assert a is not None and (a.state, a.remote_id, a.last_error) == (D.FAILED, "1700000000001", "gone")


async def test_delivery_round_trip(store: Store) -> None:
    await setup(store)
    item = NewDelivery(
        id="rt",
        direction=Direction.OUTBOUND,
        meeting_id="m-1",
        user_id="webhook:app/ann",
        kind="edit",
        body={"text": "héllo\nworld", "n": 3, "nested": {"ok": True}},
        session_id=None,
    )
    await store.add_deliveries([item])
    got = await store.get_delivery("rt")
    assert got is not None
    assert (got.direction, got.kind, got.body, got.state, got.attempts) == (
        Direction.OUTBOUND,
        "edit",
        item.body,
        D.PENDING,
        0,
    )
    assert got.created_at is not None and abs(got.created_at - utcnow()) < timedelta(minutes=1)


async def test_outbox_depth_counts_pending_and_held_by_direction(store: Store) -> None:
    await setup(store)
    assert await store.outbox_depth() == {}
    await store.add_deliveries(
        [
            delivery("i1"),
            delivery("i2", state=D.HELD),
            delivery("o1", direction=Direction.OUTBOUND),
            delivery("o2", direction=Direction.OUTBOUND),
            delivery("o3", direction=Direction.OUTBOUND),
        ]
    )
    assert await store.outbox_depth() == {"in": 2, "out": 3}
    await store.finish(["o1"], D.DELIVERED)
    await store.finish(["o2"], D.FAILED, error="410")
    await store.finish(["i1"], D.DELIVERED)
    assert await store.outbox_depth() == {"in": 1, "out": 1}


async def test_forget_user_deletes_their_rows(store: Store) -> None:
    ann, bob = "webhook:app/ann", "webhook:app/bob"
    await setup(store, ann, bob)
    await store.update_user(ann, identity_id="8:acs:ann")
    s_ann = await store.create_session(ann, "m-1", "8:acs:ann")
    s_bob = await store.create_session(bob, "m-1", None)
    await store.set_session_state(s_ann.id, S.JOINING)
    await store.add_deliveries(
        [
            delivery("ann-in", user=ann, session_id=s_ann.id),
            delivery("ann-out", user=ann, direction=Direction.OUTBOUND),
            delivery("bob-out", user=bob, direction=Direction.OUTBOUND),
        ]
    )
    assert await store.identities() == {"8:acs:ann"}
    await store.forget_user(ann)
    assert await store.get_user(ann) is None
    assert [d.id for d in await store.deliveries()] == ["bob-out"]
    assert await store.get_session(s_ann.id) is None
    assert await store.session_events(s_ann.id) == []
    assert await store.identities() == set()
    # Bob is untouched.
    assert await store.get_user(bob) is not None
    assert await store.get_session(s_bob.id) is not None
    # Ann can come back as a new user with a new session.
    await store.upsert_user(ann, "webhook", "Ann")
    assert (await store.create_session(ann, "m-1", None)).state == S.REQUESTED


# meetings and users -----------------------------------------------------------------------------------------


async def test_meetings_and_users(store: Store) -> None:
    await store.upsert_meeting(meeting())
    await store.upsert_meeting(meeting("m-2", "654321"), source="runtime")
    found = await store.meeting_by_code("123456")
    assert found is not None and found.id == "m-1" and found.allow == ["*"]
    assert await store.meeting_ids("config") == {"m-1"}
    await store.update_meeting("m-1", relay_identity="8:acs:relay", paused=True)
    again = await store.get_meeting("m-1")
    assert again is not None and again.relay_identity == "8:acs:relay" and again.paused
    assert await store.identities() == {"8:acs:relay"}
    with pytest.raises(ValueError):
        await store.update_meeting("m-1", code="999999")
    # A re-sync from the configuration keeps what the bridge learned (thread id) when the config has none.
    await store.upsert_meeting(Meeting(**{**meeting().__dict__, "thread_id": None, "name": "Renamed"}))
    again = await store.get_meeting("m-1")
    assert again is not None and again.name == "Renamed" and again.thread_id == "19:meeting_m-1@thread.v2"
    with pytest.raises(StoreConflictError):  # join codes are unique
        await store.upsert_meeting(meeting("m-3", "123456"))
    await store.delete_meeting("m-2")
    assert [m.id for m in await store.list_meetings()] == ["m-1"]

    user = await store.upsert_user("webhook:app/ann", "webhook", None)
    assert user.display_name == "ann"  # the user id's last part until a name is given
    user = await store.upsert_user("webhook:app/ann", "webhook", "Ann")
    assert user.display_name == "Ann"
    user = await store.upsert_user("webhook:app/ann", "webhook", None)
    assert user.display_name == "Ann"  # a request without a name keeps the known one
    await store.update_user("webhook:app/ann", opted_out=True)
    got = await store.get_user("webhook:app/ann")
    assert got is not None and got.opted_out and not got.blocked
    with pytest.raises(ValueError):
        await store.update_user("webhook:app/ann", channel="sms")


async def test_transaction_rolls_back_on_error(store: Store) -> None:
    await setup(store)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.run("UPDATE meetings SET name='changed' WHERE id='m-1'")
            raise RuntimeError("boom")
    m = await store.get_meeting("m-1")
    assert m is not None and m.name == "Weekly sync"


async def test_a_condition_holds_in_the_call_only_and_its_end_releases_what_it_held(store: Store) -> None:
    await setup(store, "webhook:app/ann", "webhook:app/bob")
    ann = await store.create_session("webhook:app/ann", "m-1", None)
    bob = await store.create_session("webhook:app/bob", "m-1", None)
    await store.set_session_state(ann.id, S.IN_CALL)
    await store.set_condition(
        [ann.id, bob.id],
        "chat_refused",
        "403 from the chat",
        [delivery("n-ann", direction=Direction.OUTBOUND, kind="notice")],
    )
    got_ann, got_bob = await store.get_session(ann.id), await store.get_session(bob.id)
    assert got_ann is not None and (got_ann.condition, got_ann.condition_reason) == (
        "chat_refused",
        "403 from the chat",
    )
    assert got_bob is not None and got_bob.condition is None  # not in the call: no condition
    assert await store.condition_counts("chat_refused") == {"m-1": 1}
    assert await store.get_delivery("n-ann") is not None
    await store.add_deliveries([delivery(f"h{i}", state=D.HELD, session_id=ann.id) for i in range(3)])
    oldest = await store.held_since([ann.id, bob.id])
    assert oldest is not None and abs(oldest - utcnow()) < timedelta(minutes=1)
    assert await store.held_since([]) is None
    assert await store.expire_held(ann.id, utcnow() - timedelta(hours=1), "too old") == 0
    assert await store.clear_condition([ann.id]) == 3
    assert [d.id for d in await store.pending(Direction.INBOUND, "meeting_id", "m-1")] == ["h0", "h1", "h2"]
    assert await store.condition_counts("chat_refused") == {}
    # A transition within the call keeps a condition; leaving the call clears it.
    await store.set_condition([ann.id], "chat_refused", "again")
    await store.set_session_state(ann.id, S.IN_CALL, "still connected")
    kept = await store.get_session(ann.id)
    assert kept is not None and kept.condition == "chat_refused"
    await store.add_deliveries([delivery("late", state=D.HELD, session_id=ann.id)])
    assert await store.expire_held(ann.id, utcnow() + timedelta(seconds=1), "held too long") == 1
    await store.set_session_state(ann.id, S.LEFT, "user")
    left = await store.get_session(ann.id)
    assert left is not None and left.condition is None and left.condition_reason is None
