"""Teams meetings in the world: the call, its lobby and legs, Teams users, chat membership that follows the call."""

from __future__ import annotations

import asyncio
import secrets
import string
import uuid
from typing import TYPE_CHECKING

from .credentials import SandboxCredentials
from .errors import SandboxError, bad_request, forbidden, not_found
from .meetings import (
    ENDED_FOR_ALL,
    FINAL_LEG_STATES,
    OWN_HANG_UP,
    REMOVED,
    TOKEN_INVALID,
    CallLeg,
    CallSettings,
    LegState,
    LobbyPolicy,
    Meeting,
    TeamsUser,
    new_meeting_key,
    parse_join_link,
    state_for_end,
)
from .threads import Message, Participant, Thread
from .util import JsonDict, digits, new_guid, now


class TeamsMixin:
    """The interop rule: an ACS identity is in a meeting's thread exactly while one of its call legs is connected."""

    credentials: SandboxCredentials
    threads: dict[str, Thread]
    meetings: dict[str, Meeting]
    legs: dict[str, CallLeg]
    call_watchers: set[asyncio.Queue[JsonDict]]
    call_settings: CallSettings

    if TYPE_CHECKING:

        def _system_message(
            self,
            thread: Thread,
            kind: str,
            initiator: str | None,
            participants: list[Participant],
            *,
            events: bool = True,
        ) -> Message: ...

    # Teams meetings ---------------------------------------------------------------------------------

    def create_meeting(
        self, subject: str, organizer_name: str, lobby: LobbyPolicy, start: float, end: float
    ) -> Meeting:
        organizer = TeamsUser(f"8:orgid:{uuid.uuid4()}", organizer_name, in_call=False)
        key = new_meeting_key()
        meeting_id = f"MSp{uuid.uuid4().hex}"
        meeting = Meeting(
            id=meeting_id,
            key=key,
            subject=subject,
            organizer=organizer,
            tenant_id=self.credentials.tenant_id,
            start=start,
            end=end,
            join_meeting_id=str(secrets.randbelow(9) + 1) + digits(11),
            passcode="".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(6)),
            lobby=lobby,
            created_on=now(),
        )
        meeting.teams_users[organizer.id] = organizer
        thread = Thread(id=meeting.thread_id, topic=subject, created_by=organizer.id, created_on=meeting.created_on)
        thread.meeting_id = meeting.id
        thread.participants[organizer.id] = Participant(organizer.id, organizer_name, 0.0)
        self.threads[thread.id] = thread
        self.meetings[meeting.id] = meeting
        return meeting

    guest_chat_refused: bool

    def refuses_guest_chat(self, meeting: Meeting) -> bool:
        """ACS users in this meeting's call are refused its chat (the meeting's tenant setting or the resource)."""
        return self.guest_chat_refused or not meeting.guest_chat

    def meeting(self, meeting_id: str) -> Meeting:
        meeting = self.meetings.get(meeting_id)
        if meeting is None:
            raise not_found(f"Meeting {meeting_id} does not exist.")
        return meeting

    def find_meeting(self, link: str | None, join_id: str | None, passcode: str | None) -> Meeting:
        thread_id = None
        if link is not None:
            # Match what the link names, as the Calling SDK does, not its exact text (escaping, extra parameters).
            thread_id, link_join_id, link_passcode = parse_join_link(link)
            if link_join_id is not None:
                join_id, passcode = link_join_id, link_passcode
        for meeting in self.meetings.values():
            if thread_id is not None and meeting.thread_id == thread_id:
                return meeting
            if join_id is not None and meeting.join_meeting_id == join_id.replace(" ", ""):
                if passcode != meeting.passcode:
                    raise forbidden("The meeting passcode is wrong.")
                return meeting
        raise not_found("No meeting matches that link or id.")

    def start_meeting(self, meeting: Meeting) -> None:
        if meeting.call_state == "live":
            return
        meeting.call_state = "live"
        # Teams users who opened the meeting before it started are in the call once it starts.
        for user in meeting.teams_users.values():
            user.in_call = True
        if meeting.lobby == "auto":
            for leg in list(meeting.legs.values()):
                if leg.state == "lobby":
                    self._connect(meeting, leg)

    def end_meeting(self, meeting: Meeting) -> None:
        if meeting.call_state == "ended":
            return
        meeting.call_state = "ended"
        for user in meeting.teams_users.values():
            user.in_call = False
        for leg in list(meeting.legs.values()):
            if leg.state not in FINAL_LEG_STATES:
                self._finish_leg(leg, ENDED_FOR_ALL, "the meeting has ended", initiator=meeting.organizer.id)

    def teams_user_join(self, meeting: Meeting, display_name: str) -> TeamsUser:
        user = TeamsUser(f"8:orgid:{uuid.uuid4()}", display_name, in_call=meeting.call_state == "live")
        meeting.teams_users[user.id] = user
        thread = self.threads[meeting.thread_id]
        participant = Participant(user.id, display_name, 0.0)
        thread.participants[user.id] = participant
        self._system_message(thread, "participantAdded", user.id, [participant])
        return user

    def teams_user(self, meeting: Meeting, user_id: str) -> TeamsUser:
        user = meeting.teams_users.get(user_id)
        if user is None:
            raise bad_request(f"{user_id} is not a Teams user of this meeting.")
        return user

    def join_call(
        self,
        meeting: Meeting,
        identity: str,
        display_name: str,
        leg_id: str | None = None,
        *,
        muted: bool | None = None,
    ) -> CallLeg:
        """A new leg, in the lobby or connected. `leg_id` is the client's own call id (the stand-in SDK's)."""
        refusal = self.call_settings.interop_refusal
        if refusal is not None:
            raise SandboxError(
                403, "InteropNotEnabled", f"Teams interop is not enabled for this tenant or resource ({refusal})."
            )
        if meeting.call_state == "ended":
            raise SandboxError(409, "MeetingEnded", "The meeting has ended.")
        if leg_id is not None and leg_id in self.legs:
            raise SandboxError(409, "CallExists", f"Call {leg_id} exists already.")
        leg = CallLeg(
            id=leg_id or new_guid(),
            meeting_id=meeting.id,
            identity=identity,
            display_name=display_name,
            state="lobby",
            created_on=now(),
            muted=muted,
            incoming_audio_muted=None if muted is None else False,
            hub=self.call_watchers,
        )
        meeting.legs[leg.id] = leg
        self.legs[leg.id] = leg
        if meeting.call_state == "live" and meeting.lobby == "auto":
            self._connect(meeting, leg)
        else:
            leg.publish()  # a leg that waits in the lobby is news to the resource's call event streams too
        return leg

    def admit(self, meeting: Meeting, leg_id: str) -> CallLeg:
        leg = meeting.legs.get(leg_id)
        if leg is None or leg.state != "lobby":
            raise bad_request(f"{leg_id} is not waiting in this meeting's lobby.")
        if meeting.call_state != "live":
            raise SandboxError(409, "MeetingNotLive", "The meeting has not started; nobody can be admitted yet.")
        self._connect(meeting, leg)
        return leg

    def remove(self, meeting: Meeting, participant_id: str, sub_code: int = REMOVED[1]) -> None:
        leg = meeting.legs.get(participant_id)
        if leg is not None and leg.state not in FINAL_LEG_STATES:
            self._finish_leg(leg, (0, sub_code), "the organizer removed you", initiator=meeting.organizer.id)
            return
        user = meeting.teams_users.get(participant_id)
        if user is not None and user is not meeting.organizer:
            user.in_call = False
            thread = self.threads[meeting.thread_id]
            removed = thread.participants.pop(user.id, None)
            del meeting.teams_users[user.id]
            if removed is not None:
                self._system_message(thread, "participantRemoved", meeting.organizer.id, [removed])
            return
        raise not_found(f"{participant_id} is not in this meeting.")

    def leave_call(self, leg: CallLeg) -> None:
        if leg.state not in FINAL_LEG_STATES:
            self._finish_leg(leg, OWN_HANG_UP, None)

    def end_leg(self, leg: CallLeg, end_reason: tuple[int, int], reason: str | None) -> None:
        """End a leg with any (code, subCode), as the service ends one for a reason of its own."""
        if leg.state not in FINAL_LEG_STATES:
            self._finish_leg(leg, end_reason, reason)

    def refuse_token(self, leg: CallLeg) -> None:
        self.end_leg(leg, TOKEN_INVALID, "the access token expired and no valid one came")

    def _connect(self, meeting: Meeting, leg: CallLeg) -> None:
        t = now()
        leg.set_state("connected", t)
        thread = self.threads[meeting.thread_id]
        if leg.identity not in thread.participants:
            participant = Participant(leg.identity, leg.display_name, t, thread.next_sequence_id())
            thread.participants[leg.identity] = participant
            self._system_message(thread, "participantAdded", leg.identity, [participant])

    def _finish_leg(
        self, leg: CallLeg, end_reason: tuple[int, int], reason: str | None, initiator: str | None = None
    ) -> None:
        was_connected = leg.state == "connected"
        state: LegState = state_for_end(*end_reason)
        leg.set_state(state, now(), reason, end_reason)
        meeting = self.meetings[leg.meeting_id]
        if not was_connected or meeting.connected_leg(leg.identity) is not None:
            return
        thread = self.threads[meeting.thread_id]
        removed = thread.participants.pop(leg.identity, None)
        if removed is not None:
            self._system_message(thread, "participantRemoved", initiator or leg.identity, [removed])

    def call_leg(self, call_id: str, identity: str | None = None) -> CallLeg:
        leg = self.legs.get(call_id)
        if leg is None or (identity is not None and leg.identity != identity):
            raise not_found(f"Call {call_id} does not exist.")
        return leg
