"""An incremental parser for server-sent events (the WHATWG event-stream format), fed with raw byte chunks."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_EOL = re.compile(r"\r\n|\r|\n")
MAX_EVENT_CHARS = 1_000_000


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


class SseParser:
    """Turns chunks of an event stream into events; comments are skipped, an unfinished event is never emitted."""

    def __init__(self, max_event_chars: int = MAX_EVENT_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max = max_event_chars
        self._buf = ""
        self._started = False
        # A chunk may end between the CR and LF of one CRLF line ending.
        self._skip_lf = False
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        buf = self._buf + text
        start = 0
        if self._skip_lf and buf:
            self._skip_lf = False
            if buf[0] == "\n":
                start = 1
        events: list[SseEvent] = []
        while (match := _EOL.search(buf, start)) is not None:
            event = self._line(buf[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
            if match.group() == "\r" and start == len(buf):
                self._skip_lf = True
        self._buf = buf[start:]
        if len(self._buf) + self._size > self._max:
            # A stream that never ends its event would otherwise grow without bound.
            raise ValueError(f"server-sent event longer than {self._max} characters")
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._size += len(value) + 1
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._size = [], "", 0
        if not data:
            return None
        return SseEvent(event or "message", "\n".join(data), self.last_event_id)
