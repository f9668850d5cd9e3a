"""The soak's counting, kept pure: tokens in texts, and lost, duplicated and out-of-order ones at each sink.

Every message the soak sends carries one token, `[u007#00042]` (external user 7's 42nd message) or
`[t003#00005]` (Teams user 3's 5th post). The bridge may merge a sender's consecutive messages into one chat
message and an SMS may combine several meeting messages into one text, so a sink is judged by the tokens it
holds, never by how many messages or texts carried them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(r"\[([ut]\d{3})#(\d{5})\]")
EXAMPLES = 5


def token(owner: str, number: int) -> str:
    return f"[{owner}#{number:05d}]"


def tokens(text: str) -> list[tuple[str, int]]:
    """(owner, number) of each token in the text, in the order they appear."""
    return [(m.group(1), int(m.group(2))) for m in TOKEN.finditer(text)]


@dataclass
class Tally:
    """What one kind of sink got, against what it should have got."""

    expected: int = 0
    arrived: int = 0
    """Distinct expected tokens that arrived."""
    lost: int = 0
    duplicated: int = 0
    """Extra copies: a token that arrived three times counts two."""
    out_of_order: int = 0
    unexpected: int = 0
    """Tokens that should not have reached this sink at all (an author's own message echoed back to them)."""
    excused: int = 0
    """Expected tokens that did not arrive because a call leg was re-joining (bench/soak_gaps.py): not lost."""
    examples: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(what)

    def add(self, other: Tally) -> None:
        self.expected += other.expected
        self.arrived += other.arrived
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.out_of_order += other.out_of_order
        self.unexpected += other.unexpected
        self.excused += other.excused
        for example in other.examples:
            self.note(example)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.unexpected)

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "arrived": self.arrived,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "outOfOrder": self.out_of_order,
            "unexpected": self.unexpected,
            "excused": self.excused,
            "examples": self.examples,
        }


def check_thread(where: str, contents: Iterable[str], acked: Mapping[str, list[int]]) -> Tally:
    """A meeting thread (its messages' contents, oldest first) against the tokens its senders had acknowledged.

    Each acknowledged token must occur exactly once, and one sender's tokens in the order they were sent.
    """
    seen = [t for content in contents for t in tokens(content) if t[0].startswith("u")]
    counts = Counter(seen)
    tally = Tally(expected=sum(len(numbers) for numbers in acked.values()))
    for owner, numbers in acked.items():
        for number in numbers:
            found = counts.get((owner, number), 0)
            if found == 0:
                tally.lost += 1
                tally.note(f"{where}: {token(owner, number)} acknowledged but not in the thread")
            else:
                tally.arrived += 1
    for (owner, number), found in counts.items():
        if found > 1:
            tally.duplicated += found - 1
            tally.note(f"{where}: {token(owner, number)} {found} times in the thread")
    highest: dict[str, int] = {}
    for owner, number in dict.fromkeys(seen):
        if number < highest.get(owner, -1):
            tally.out_of_order += 1
            tally.note(f"{where}: {token(owner, number)} after {token(owner, highest[owner])}")
        highest[owner] = max(highest.get(owner, -1), number)
    return tally


def check_recipient(
    where: str,
    texts: Iterable[str],
    expected: list[tuple[str, int]],
    own: str,
    kind: str | None = None,
    excused: Collection[tuple[str, int]] = (),
) -> Tally:
    """What one external user received (texts in arrival order) against the thread's tokens meant for them.

    `expected` is in thread order; `own` is the user's token owner (their own messages must not come back).
    `kind` "t" or "u" restricts the judgement to Teams posts or to other external users' messages. A token in
    `excused` that never arrived is counted apart, not lost (a re-join explains it).
    """
    want = [t for t in expected if kind is None or t[0].startswith(kind)]
    position = {t: i for i, t in enumerate(want)}
    got = [t for text in texts for t in tokens(text) if kind is None or t[0].startswith(kind)]
    counts = Counter(got)
    tally = Tally(expected=len(want))
    for t in want:
        if counts.get(t, 0) == 0 and t in excused:
            tally.excused += 1
        elif counts.get(t, 0) == 0:
            tally.lost += 1
            tally.note(f"{where}: {token(*t)} never arrived")
        else:
            tally.arrived += 1
    for t, found in counts.items():
        if t[0] == own or t not in position:
            tally.unexpected += found
            tally.note(f"{where}: {token(*t)} should not have arrived")
        elif found > 1:
            tally.duplicated += found - 1
            tally.note(f"{where}: {token(*t)} arrived {found} times")
    last = -1
    for t in dict.fromkeys(got):
        at = position.get(t)
        if at is None:
            continue
        if at < last:
            tally.out_of_order += 1
            tally.note(f"{where}: {token(*t)} arrived after a later message")
        last = max(last, at)
    return tally
