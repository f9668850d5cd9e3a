"""Chat threads and messages as ACS stores them: sequence ids, versions, edits, deletes, participants."""

from __future__ import annotations

from dataclasses import dataclass, field

from .util import JsonDict, acs_identifier, iso


@dataclass
class Participant:
    raw_id: str
    display_name: str | None
    share_history_time: float
    first_sequence: int = 0
    """Set when joining a meeting's call: the join's own system message and everything after it are visible.
    Times alone cannot tell a message from the join when both fall in the same millisecond."""

    def sees(self, message: Message) -> bool:
        return message.sequence_id >= self.first_sequence and message.created_on >= self.share_history_time

    def to_json(self) -> JsonDict:
        body: JsonDict = {
            "communicationIdentifier": acs_identifier(self.raw_id),
            "shareHistoryTime": iso(self.share_history_time),
        }
        if self.display_name:
            body["displayName"] = self.display_name
        return body


@dataclass
class Message:
    id: str
    type: str
    sequence_id: int
    created_on: float
    version: str
    sender: str | None = None
    sender_display_name: str | None = None
    content: JsonDict = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    edited_on: float | None = None
    deleted_on: float | None = None

    @property
    def modified_on(self) -> float:
        return max(t for t in (self.created_on, self.edited_on, self.deleted_on) if t is not None)

    def to_json(self) -> JsonDict:
        body: JsonDict = {
            "id": self.id,
            "type": self.type,
            "sequenceId": str(self.sequence_id),
            "version": self.version,
            "createdOn": iso(self.created_on),
            "content": self.content,
        }
        if self.sender is not None:
            body["senderCommunicationIdentifier"] = acs_identifier(self.sender)
        if self.sender_display_name:
            body["senderDisplayName"] = self.sender_display_name
        if self.metadata:
            body["metadata"] = self.metadata
        if self.edited_on is not None:
            body["editedOn"] = iso(self.edited_on)
        if self.deleted_on is not None:
            body["deletedOn"] = iso(self.deleted_on)
        return body


@dataclass
class Thread:
    id: str
    topic: str
    created_by: str | None
    created_on: float
    meeting_id: str | None = None
    deleted_on: float | None = None
    messages: list[Message] = field(default_factory=list)
    by_id: dict[str, Message] = field(default_factory=dict)
    participants: dict[str, Participant] = field(default_factory=dict)
    read_receipts: dict[str, tuple[str, float]] = field(default_factory=dict)
    last_message_on: float | None = None

    def append(self, message: Message) -> Message:
        self.messages.append(message)
        self.by_id[message.id] = message
        self.last_message_on = message.created_on
        return message

    def next_sequence_id(self) -> int:
        return len(self.messages) + 1

    def visible(self, reader: Participant, start_time: float | None, before_seq: int | None) -> list[Message]:
        """Messages newest first that the reader may see, changed at or after start_time."""
        out: list[Message] = []
        for message in reversed(self.messages):
            if before_seq is not None and message.sequence_id >= before_seq:
                continue
            if not reader.sees(message):
                break
            if start_time is not None and message.modified_on < start_time:
                continue
            out.append(message)
        return out

    def to_json(self) -> JsonDict:
        body: JsonDict = {"id": self.id, "topic": self.topic, "createdOn": iso(self.created_on)}
        if self.created_by is not None:
            body["createdByCommunicationIdentifier"] = acs_identifier(self.created_by)
        if self.deleted_on is not None:
            body["deletedOn"] = iso(self.deleted_on)
        return body

    def to_item_json(self) -> JsonDict:
        body: JsonDict = {"id": self.id, "topic": self.topic}
        if self.deleted_on is not None:
            body["deletedOn"] = iso(self.deleted_on)
        if self.last_message_on is not None:
            body["lastMessageReceivedOn"] = iso(self.last_message_on)
        return body
