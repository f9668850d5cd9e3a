"""The in-memory world: ACS identities, chat threads, Teams meetings, their calls, and the rules between them."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from . import bus
from .credentials import SandboxCredentials
from .errors import SandboxError, bad_request, forbidden, interop_forbidden, not_found, unauthorized
from .meetings import FINAL_LEG_STATES, OWN_HANG_UP, CallLeg, CallSettings, Meeting
from .teams import TeamsMixin
from .threads import Message, Participant, Thread
from .tokens import ACS_SCOPES, AcsClaims, TokenIssuer
from .util import JsonDict, acs_identifier, iso, new_guid, now

MAX_MESSAGE_BYTES = 28 * 1024
MAX_PARTICIPANTS = 250
TOKEN_MINUTES_MIN, TOKEN_MINUTES_MAX, TOKEN_MINUTES_DEFAULT = 60, 1440, 1440


@dataclass
class Identity:
    id: str
    created_on: float
    generation: int = 0


class World(TeamsMixin):
    """All sandbox state. Methods enforce the service's rules and raise SandboxError; HTTP lives elsewhere."""

    def __init__(self, credentials: SandboxCredentials, sms_number: str) -> None:
        self.credentials = credentials
        self.sms_number = sms_number
        self.tokens = TokenIssuer(credentials.signing_key_bytes, credentials.resource_id)
        self.events = bus.EventBus()
        # Open streams outlive a reset: they are connections, not state.
        self.call_watchers: set[asyncio.Queue[JsonDict]] = set()
        self.reset()

    def reset(self) -> None:
        self.identities: dict[str, Identity] = {}
        self.threads: dict[str, Thread] = {}
        self.meetings: dict[str, Meeting] = {}
        self.legs: dict[str, CallLeg] = {}
        self.call_settings = CallSettings()
        self.token_lifetime_s: int | None = None
        """Set by the control API: ACS tokens issued from then on last this long, whatever was asked (tests of
        token refresh need tokens that expire in seconds; the real service issues 1-24 h)."""
        self._thread_repeatability: dict[tuple[str, str], str] = {}
        """(caller, repeatability-request-id) -> thread: the service scopes the id to whoever sent it."""
        self._last_id_ms = 0
        self.guest_chat_refused = False
        """The whole resource's ACS users are refused meeting chat while their calls work (Azure/Communication#600)."""

    def new_message_id(self) -> str:
        """ACS message ids are epoch milliseconds; keep them unique and increasing."""
        self._last_id_ms = max(int(now() * 1000), self._last_id_ms + 1)
        return str(self._last_id_ms)

    # identities -------------------------------------------------------------------------------------

    def create_identity(self) -> Identity:
        ident = Identity(f"8:acs:{self.credentials.resource_id}_{uuid.uuid4()}", now())
        self.identities[ident.id] = ident
        return ident

    def teams_identity(self, raw_id: str) -> Identity:
        """The identity a Teams user's exchanged token speaks as (8:orgid:<object id>), known from its first token."""
        ident = self.identities.get(raw_id)
        if ident is None:
            ident = self.identities[raw_id] = Identity(raw_id, now())
        return ident

    def identity(self, identity_id: str) -> Identity:
        ident = self.identities.get(identity_id)
        if ident is None:
            raise not_found(f"Identity {identity_id} does not exist.")
        return ident

    def issue_token(self, identity_id: str, scopes: object, minutes: object) -> tuple[str, float]:
        ident = self.identity(identity_id)
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
            raise bad_request("scopes must be a non-empty list of strings.")
        unknown = sorted(set(scopes) - ACS_SCOPES)
        if unknown:
            raise bad_request(
                f"Unknown scope(s) {', '.join(unknown)}; valid scopes are {', '.join(sorted(ACS_SCOPES))}."
            )
        if minutes is None:
            minutes = TOKEN_MINUTES_DEFAULT
        if not isinstance(minutes, int) or isinstance(minutes, bool):
            raise bad_request("expiresInMinutes must be an integer.")
        if not TOKEN_MINUTES_MIN <= minutes <= TOKEN_MINUTES_MAX:
            raise bad_request(
                f"expiresInMinutes must be between {TOKEN_MINUTES_MIN} and {TOKEN_MINUTES_MAX}, got {minutes}."
            )
        lifetime_s = self.token_lifetime_s if self.token_lifetime_s is not None else minutes * 60
        return self.tokens.issue_acs(ident.id, list(dict.fromkeys(scopes)), lifetime_s, ident.generation)

    def revoke_tokens(self, identity_id: str) -> None:
        self.identity(identity_id).generation += 1

    def delete_identity(self, identity_id: str) -> None:
        self.identity(identity_id)
        del self.identities[identity_id]
        for leg in list(self.legs.values()):
            if leg.identity == identity_id and leg.state not in FINAL_LEG_STATES:
                # Its owner deleted it: the leg leaves as by its own hang-up.
                self._finish_leg(leg, OWN_HANG_UP, "identity deleted")

    def authenticate(self, token: str, scope: str) -> AcsClaims:
        claims = self.tokens.verify_acs(token)
        ident = self.identities.get(claims.identity)
        if ident is None:
            raise unauthorized("The identity of this access token no longer exists.")
        if claims.generation != ident.generation:
            raise unauthorized("The access token has been revoked.")
        if scope not in claims.scopes:
            raise forbidden(f"The access token lacks the '{scope}' scope.")
        return claims

    # chat -------------------------------------------------------------------------------------------

    def thread(self, thread_id: str) -> Thread:
        thread = self.threads.get(thread_id)
        if thread is None or thread.deleted_on is not None:
            raise not_found(f"Thread {thread_id} does not exist.")
        return thread

    def member_thread(self, caller: str, thread_id: str) -> tuple[Thread, Participant]:
        """The thread and the caller's membership; a meeting thread admits only identities in its call."""
        thread = self.threads.get(thread_id)
        meeting = self.meetings.get(thread.meeting_id) if thread and thread.meeting_id else None
        if meeting is not None and thread is not None:
            member = thread.participants.get(caller)
            if member is None or (caller.startswith("8:acs:") and self.refuses_guest_chat(meeting)):
                # Refused chat looks exactly like not being in the call: the same 403, the same body.
                raise interop_forbidden()
            return thread, member
        thread = self.thread(thread_id)
        member = thread.participants.get(caller)
        if member is None:
            raise forbidden("The initiator doesn't have the permission to perform the requested operation.")
        return thread, member

    def _meeting_of(self, thread: Thread) -> Meeting | None:
        return self.meetings.get(thread.meeting_id) if thread.meeting_id else None

    def _deny_in_meeting(self, thread: Thread) -> None:
        if thread.meeting_id is not None:
            raise interop_forbidden()

    def create_thread(
        self,
        caller: str,
        topic: object,
        participants: list[tuple[str, str | None, float]],
        repeatability_id: str | None,
    ) -> Thread:
        """A new thread with the caller and the participants (each with their shareHistoryTime), opened as the
        service opens one: a participantAdded message naming everyone, then a topicUpdated one."""
        key = (caller, repeatability_id) if repeatability_id else None
        if key is not None and key in self._thread_repeatability:
            return self.threads[self._thread_repeatability[key]]
        if not isinstance(topic, str) or not topic:
            raise bad_request("topic is required.")
        t = now()
        thread = Thread(id=f"19:{uuid.uuid4().hex}@thread.v2", topic=topic, created_by=caller, created_on=t)
        for raw_id, name, share in participants:
            thread.participants[raw_id] = Participant(raw_id, name, share)
        thread.participants.setdefault(caller, Participant(caller, None, 0.0))
        self.threads[thread.id] = thread
        if key is not None:
            self._thread_repeatability[key] = thread.id
        # Creation raises a thread-created event, not participant events: these two are messages only.
        self._system_message(thread, "participantAdded", caller, list(thread.participants.values()), events=False)
        self._topic_message(thread, caller, topic)
        return thread

    def _check_size(self, content: str, metadata: dict[str, str]) -> None:
        size = len(content.encode("utf-8")) + sum(len(k) + len(v) for k, v in metadata.items())
        if size > MAX_MESSAGE_BYTES:
            raise bad_request("Message size exceeded.")

    def post_message(
        self,
        thread: Thread,
        sender: str,
        content: str,
        display_name: str | None,
        message_type: str,
        metadata: dict[str, str],
    ) -> Message:
        self._check_size(content, metadata)
        t = now()
        mid = self.new_message_id()
        message = thread.append(
            Message(
                id=mid,
                type=message_type,
                sequence_id=thread.next_sequence_id(),
                created_on=t,
                version=mid,
                sender=sender,
                sender_display_name=display_name,
                content={"message": content},
                metadata=dict(metadata),
            )
        )
        self._chat_event(thread, bus.CHAT_MESSAGE_RECEIVED, message)
        return message

    def _own_message(self, thread: Thread, caller: str | None, message_id: str) -> Message:
        message = thread.by_id.get(message_id)
        if message is None or message.deleted_on is not None:
            raise not_found(f"Message {message_id} does not exist.")
        if caller is not None and message.sender != caller:
            raise forbidden("Only the sender can change a message.")
        return message

    def update_message(
        self, thread: Thread, caller: str | None, message_id: str, content: str | None, metadata: object
    ) -> Message:
        message = self._own_message(thread, caller, message_id)
        new_meta = dict(message.metadata)
        if isinstance(metadata, dict):
            for key, value in metadata.items():
                if value is None:
                    new_meta.pop(str(key), None)
                else:
                    new_meta[str(key)] = str(value)
        elif metadata is not None:
            raise bad_request("metadata must be an object of strings.")
        new_content = content if content is not None else str(message.content.get("message", ""))
        self._check_size(new_content, new_meta)
        t = now()
        message.content = {"message": new_content}
        message.metadata = new_meta
        message.edited_on = t
        message.version = self.new_message_id()
        self._chat_event(thread, bus.CHAT_MESSAGE_EDITED, message)
        return message

    def delete_message(self, thread: Thread, caller: str | None, message_id: str) -> None:
        message = thread.by_id.get(message_id)
        if message is None or message.deleted_on is not None:
            return  # deleting twice succeeds, as it does on ACS
        self._own_message(thread, caller, message_id)
        message.deleted_on = now()
        message.content = {}
        message.version = self.new_message_id()
        self._chat_event(thread, bus.CHAT_MESSAGE_DELETED, message)

    def add_participants(self, thread: Thread, caller: str, participants: list[tuple[str, str | None, float]]) -> None:
        self._deny_in_meeting(thread)
        if len(set(thread.participants) | {p[0] for p in participants}) > MAX_PARTICIPANTS:
            raise SandboxError(403, "Forbidden", f"A thread can have at most {MAX_PARTICIPANTS} participants.")
        for raw_id, name, share in participants:
            thread.participants[raw_id] = Participant(raw_id, name, share)
        self._system_message(thread, "participantAdded", caller, [thread.participants[p[0]] for p in participants])

    def remove_participant(self, thread: Thread, caller: str, raw_id: str) -> None:
        self._deny_in_meeting(thread)
        removed = thread.participants.pop(raw_id, None)
        if removed is not None:
            self._system_message(thread, "participantRemoved", caller, [removed])

    def update_topic(self, thread: Thread, caller: str, topic: object) -> None:
        self._deny_in_meeting(thread)
        if not isinstance(topic, str) or not topic:
            raise bad_request("topic must be a non-empty string.")
        thread.topic = topic
        self._topic_message(thread, caller, topic)

    def _topic_message(self, thread: Thread, caller: str, topic: str) -> None:
        mid = self.new_message_id()
        thread.append(
            Message(
                id=mid,
                type="topicUpdated",
                sequence_id=thread.next_sequence_id(),
                created_on=now(),
                version=mid,
                content={"topic": topic, "initiatorCommunicationIdentifier": acs_identifier(caller)},
            )
        )

    def delete_thread(self, thread: Thread) -> None:
        self._deny_in_meeting(thread)
        thread.deleted_on = now()

    def _system_message(
        self, thread: Thread, kind: str, initiator: str | None, participants: list[Participant], *, events: bool = True
    ) -> Message:
        mid = self.new_message_id()
        content: JsonDict = {"participants": [p.to_json() for p in participants]}
        if initiator is not None:
            content["initiatorCommunicationIdentifier"] = acs_identifier(initiator)
        message = thread.append(
            Message(
                id=mid,
                type=kind,
                sequence_id=thread.next_sequence_id(),
                created_on=now(),
                version=mid,
                content=content,
            )
        )
        event_type = bus.CHAT_PARTICIPANT_ADDED if kind == "participantAdded" else bus.CHAT_PARTICIPANT_REMOVED
        for participant in participants if events else ():
            self._participant_event(thread, event_type, participant, initiator)
        return message

    def _emits_events(self, thread: Thread) -> bool:
        meeting = self._meeting_of(thread)
        # Teams meeting chats raise ACS events only while at least one ACS user is in the call.
        return meeting is None or meeting.acs_in_call() > 0

    def _chat_event(self, thread: Thread, event_type: str, message: Message) -> None:
        if not self._emits_events(thread):
            return
        sender = message.sender or ""
        data: JsonDict = {
            "messageId": message.id,
            "type": message.type.capitalize() if message.type in ("text", "html") else message.type,
            "version": int(message.version),
            "metadata": message.metadata,
            "senderDisplayName": message.sender_display_name or "",
            "senderCommunicationIdentifier": acs_identifier(sender),
            "composeTime": iso(message.created_on),
            "threadId": thread.id,
            "transactionId": new_guid(),
        }
        if event_type == bus.CHAT_MESSAGE_DELETED:
            data["deleteTime"] = iso(message.deleted_on or now())
        else:
            data["messageBody"] = str(message.content.get("message", ""))
        if event_type == bus.CHAT_MESSAGE_EDITED:
            data["editTime"] = iso(message.edited_on or now())
        self.events.publish(event_type, f"thread/{thread.id}/sender/{sender}", data)

    def _participant_event(
        self, thread: Thread, event_type: str, participant: Participant, initiator: str | None
    ) -> None:
        if not self._emits_events(thread):
            return
        key = "participantAdded" if event_type == bus.CHAT_PARTICIPANT_ADDED else "participantRemoved"
        by_key = "addedByCommunicationIdentifier" if key == "participantAdded" else "removedByCommunicationIdentifier"
        data: JsonDict = {
            "time": iso(now()),
            by_key: acs_identifier(initiator or participant.raw_id),
            key: {
                "displayName": participant.display_name or "",
                "participantCommunicationIdentifier": acs_identifier(participant.raw_id),
                "shareHistoryTime": iso(participant.share_history_time),
            },
            "threadId": thread.id,
            "version": int(self.new_message_id()),
            "transactionId": new_guid(),
        }
        self.events.publish(event_type, f"thread/{thread.id}", data)
