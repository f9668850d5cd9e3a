"""Opt-out in words (pure): whether a whole text means "stop texting me", in English, Spanish or French.

`match(text)` answers with the phrase it matched and how: `exact` when the text is a phrase of the table once case,
accents, apostrophes, punctuation and politeness ("please", "por favor", "merci") are set aside; `near` when it is
one after filler words ("ok", "just", "now") are dropped too, or within a typo or two of a phrase long enough for a
typo to be told from another word. A near match never adds or drops a negation. None otherwise: a phrase inside a
longer sentence is chat.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from .opt_out_phrases import COURTESY, FILLERS, NEGATIONS, PHRASES

Kind = Literal["exact", "near"]
_APOSTROPHES = str.maketrans("", "", "'\u2019\u02bc\u2018`\u00b4")
# Longer than this (normalised) is a sentence, not an opt-out: and the typo search stays cheap.
MAX_CHARS = 80


@dataclass(frozen=True)
class OptOut:
    kind: Kind
    phrase: str
    """The table's phrase, normalised (what the ledger records as matched)."""
    language: str


def normalise(text: str) -> str:
    """Lower case (casefolded), accents and apostrophes removed, anything but letters and digits a single space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().translate(_APOSTROPHES)
    # Folding can bring marks back ("İ" folds to "i" and a combining dot): a second pass keeps this idempotent.
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", plain) if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch.isalnum() else " " for ch in plain).split())


def _phrases() -> dict[str, str]:
    table: dict[str, str] = {}
    for language, phrases in PHRASES.items():
        for phrase in phrases:
            table.setdefault(normalise(phrase), language)
    return table


TABLE: dict[str, str] = _phrases()
"""Every phrase, normalised, with its language (a phrase two languages share keeps the first)."""
_COURTESY = sorted((tuple(normalise(c).split()) for c in COURTESY), key=len, reverse=True)
_FILLERS = sorted((tuple(normalise(f).split()) for f in FILLERS), key=len, reverse=True)
_NEGATIONS = frozenset(normalise(n) for n in NEGATIONS)


def _strip_ends(words: list[str], extras: list[tuple[str, ...]]) -> list[str]:
    """The words without any of `extras` at either end; the longest is tried first each time, so "right now" goes
    whole rather than leaving "right" behind once "now" went."""
    longest_first = sorted(extras, key=len, reverse=True)
    while True:
        for extra in longest_first:
            n = len(extra)
            if len(words) > n and tuple(words[:n]) == extra:
                words = words[n:]
                break
            if len(words) > n and tuple(words[-n:]) == extra:
                words = words[:-n]
                break
        else:
            return words


def _drop_anywhere(words: list[str], extras: list[tuple[str, ...]]) -> list[str]:
    kept: list[str] = []
    index = 0
    while index < len(words):
        found = next((e for e in extras if tuple(words[index : index + len(e)]) == e), None)
        if found is not None and len(words) > len(found):
            index += len(found)
        else:
            kept.append(words[index])
            index += 1
    return kept


def typo_allowance(phrase: str) -> int:
    """Edits a near match may be away from the phrase: none for short words ("send" is no "end"), more for long."""
    return 0 if len(phrase) < 6 else 1 if len(phrase) < 12 else 2


def distance(a: str, b: str, limit: int) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) from a to b; any answer over limit is limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[len(b)], limit + 1)


_TYPO_TARGETS = [
    (phrase, typo_allowance(phrase), _NEGATIONS.intersection(phrase.split()), Counter(phrase))
    for phrase in TABLE
    if typo_allowance(phrase)
]


def _near_typo(text: str) -> str | None:
    negations = _NEGATIONS.intersection(text.split())
    letters = Counter(text)
    best: tuple[int, str] | None = None
    for phrase, allowance, its_negations, its_letters in _TYPO_TARGETS:
        if abs(len(text) - len(phrase)) > allowance or its_negations != negations:
            continue
        # An edit changes at most one letter's count on each side: a cheap bound that rules most phrases out.
        if max((letters - its_letters).total(), (its_letters - letters).total()) > allowance:
            continue
        edits = distance(text, phrase, allowance)
        if edits <= allowance and (best is None or (edits, phrase) < best):
            best = (edits, phrase)
    return best[1] if best is not None else None


def match(text: str) -> OptOut | None:
    """What the whole text is as an opt-out, if it is one. Never raises."""
    plain = normalise(text)
    if not plain or len(plain) > MAX_CHARS:
        return None
    polite = " ".join(_strip_ends(plain.split(), _COURTESY))
    if polite in TABLE:
        return OptOut("exact", polite, TABLE[polite])
    # A filler can be part of a phrase ("i don't want any more texts"): dropped from the ends, then from anywhere.
    ends = " ".join(_strip_ends(polite.split(), _FILLERS + _COURTESY))
    bare = " ".join(_drop_anywhere(_drop_anywhere(polite.split(), _COURTESY), _FILLERS))
    for form in (ends, bare):
        if form in TABLE:
            return OptOut("near", form, TABLE[form])
    # A typo can look like politeness too ("stp all" is "stop all", not "s'il te plaît, all"): looked for in every
    # form of the text.
    phrase = next(filter(None, map(_near_typo, dict.fromkeys((ends, polite, bare, plain)))), None)
    return OptOut("near", phrase, TABLE[phrase]) if phrase is not None else None
