"""The opt-out parser (bot/opt_out.py): its phrase table, normalisation, exact and near matches, and what it must
never take for an opt-out, by example and by property."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import opt_out
from bot.commands import STOP_WORDS
from bot.opt_out import TABLE, OptOut, distance, match, normalise, typo_allowance
from bot.opt_out_phrases import COURTESY, FILLERS, NEGATIONS, PHRASES

PROFILE = settings(max_examples=300, deadline=None)
PHRASE = st.sampled_from(sorted(TABLE))
NEGATION_FREE = st.sampled_from(sorted(p for p in TABLE if not opt_out._NEGATIONS.intersection(p.split())))
# Words that carry meaning of their own: a phrase followed by some of them is a sentence about something else.
TOPIC = st.lists(
    st.sampled_from(["about", "the", "budget", "report", "tomorrow", "agenda", "slides", "lunch", "Ann", "meeting"]),
    min_size=3,
    max_size=6,
)


def test_the_table_has_three_languages_and_no_phrase_twice() -> None:
    assert set(PHRASES) == {"en", "es", "fr"}
    for language, phrases in PHRASES.items():
        assert len(phrases) >= 30, language
        normalised = [normalise(p) for p in phrases]
        assert len(set(normalised)) == len(normalised), language
    assert len(TABLE) >= 120


def test_every_carrier_keyword_is_an_exact_opt_out() -> None:
    for word in STOP_WORDS:
        assert match(word) == OptOut("exact", word.lower(), "en")


@pytest.mark.parametrize(
    ("text", "phrase", "language"),
    [
        ("Please stop texting me!", "stop texting me", "en"),
        ("STOP TEXTING ME PLEASE", "stop texting me", "en"),
        ("remove me", "remove me", "en"),
        ("Unsubscribe me, thank you.", "unsubscribe me", "en"),
        ("I don't want these texts", "i dont want these texts", "en"),
        ("I don\u2019t want these texts", "i dont want these texts", "en"),  # a phone's typographic apostrophe
        ("No me envíes más mensajes, por favor", "no me envies mas mensajes", "es"),
        ("NO ME ENVIES MAS MENSAJES", "no me envies mas mensajes", "es"),
        ("Quiero darme de baja", "quiero darme de baja", "es"),
        ("Ne m'envoyez plus de SMS svp", "ne menvoyez plus de sms", "fr"),
        ("Désabonnez-moi", "desabonnez moi", "fr"),
        ("desabonnez moi", "desabonnez moi", "fr"),
        ("Arrêtez de m\u2019envoyer des messages, merci", "arretez de menvoyer des messages", "fr"),
    ],
)
def test_exact_opt_outs(text: str, phrase: str, language: str) -> None:
    assert match(text) == OptOut("exact", phrase, language)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("ok stop texting me now", "stop texting me"),  # fillers: it may answer something else
        ("just unsubscribe", "unsubscribe"),
        ("unsubscibe", "unsubscribe"),  # a typo
        ("stop textng me", "stop texting me"),
        ("remove me form the list", "remove me from the list"),
        ("hola, deja de enviarme mensajes ya", "deja de enviarme mensajes"),
    ],
)
def test_near_opt_outs(text: str, phrase: str) -> None:
    found = match(text)
    assert found is not None and found.kind == "near" and found.phrase == phrase


@pytest.mark.parametrize(
    "text",
    [
        "stop texting me about the budget, text Ann instead",
        "don't stop texting me",
        "do text me",  # "don't text me" without its negation
        "please",
        "thank you",
        "ok",
        "send",  # one edit from "end", but too short for a typo to be told from another word
        "stoop",
        "start texting me",
        "stopped by your office",
        "",
        "   ",
        "!!!",
        "the meeting can end at five",
    ],
)
def test_not_opt_outs(text: str) -> None:
    assert match(text) is None


def test_a_long_text_is_never_an_opt_out() -> None:
    assert match("stop " * 40) is None


def test_distance_counts_edits_and_stops_at_the_limit() -> None:
    assert distance("stop", "stop", 2) == 0
    assert distance("stpo", "stop", 2) == 1  # a swap of neighbours is one edit
    assert distance("unsubscibe", "unsubscribe", 1) == 1
    assert distance("abcdef", "uvwxyz", 2) == 3
    assert distance("a", "abcdefgh", 2) == 3


# ---------------------------------------------------------------- properties


@PROFILE
@given(st.text(max_size=200))
def test_match_never_raises_and_depends_only_on_the_normal_form(text: str) -> None:
    assert match(text) == match(normalise(text))


@PROFILE
@given(st.text(max_size=200))
def test_normalise_is_idempotent_and_plain(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert once == once.strip() and "  " not in once
    assert not any(unicodedata.combining(ch) for ch in once)


def _decorate(phrase: str, data: st.DataObject) -> str:
    """The phrase as a phone might send it: any case, accents, punctuation and spacing around the words."""
    out = []
    for word in phrase.split():
        word = "".join(ch.upper() if data.draw(st.booleans()) else ch for ch in word)
        if data.draw(st.booleans()) and word[:1].lower() in "aeiou":
            word = unicodedata.normalize("NFC", word[0] + "\u0301") + word[1:]  # an accent people add or drop
        out.append(word + data.draw(st.sampled_from(["", ",", " ", "  "])))
    return data.draw(st.sampled_from(["", " ", "¡"])) + " ".join(out) + data.draw(st.sampled_from(["", "!", ".", "?!"]))


@PROFILE
@given(PHRASE, st.data())
def test_every_phrase_matches_exactly_however_it_is_written(phrase: str, data: st.DataObject) -> None:
    assert match(_decorate(phrase, data)) == OptOut("exact", phrase, TABLE[phrase])


@PROFILE
@given(PHRASE, st.sampled_from(COURTESY), st.booleans())
def test_politeness_keeps_a_match_exact(phrase: str, courtesy: str, before: bool) -> None:
    text = f"{courtesy} {phrase}" if before else f"{phrase}, {courtesy}!"
    assert match(text) == OptOut("exact", phrase, TABLE[phrase])


@PROFILE
@given(PHRASE, st.sampled_from(FILLERS))
def test_fillers_make_a_match_at_least_near(phrase: str, filler: str) -> None:
    # Another phrase may be found (dropping "again" from "don't text me again" leaves "don't text me"): still one.
    assert match(f"{filler} {phrase}") is not None
    assert match(f"{filler} {phrase} {filler}") is not None


@PROFILE
@given(st.sampled_from(sorted(p for p in TABLE if typo_allowance(p) > 0)), st.data())
def test_one_typo_in_a_long_enough_phrase_is_still_an_opt_out(phrase: str, data: st.DataObject) -> None:
    where = data.draw(st.integers(0, len(phrase) - 1))
    letter = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    if kind == "replace":
        typo = phrase[:where] + letter + phrase[where + 1 :]
    elif kind == "insert":
        typo = phrase[:where] + letter + phrase[where:]
    else:
        typo = phrase[:where] + phrase[where + 1 :]
    negations = opt_out._NEGATIONS
    if negations.intersection(normalise(typo).split()) != negations.intersection(phrase.split()):
        return  # the typo made (or unmade) a negation word: no longer the same request
    assert match(typo) is not None


@PROFILE
@given(NEGATION_FREE, st.sampled_from(sorted(NEGATIONS)))
def test_a_negation_in_front_is_never_an_opt_out(phrase: str, negation: str) -> None:
    text = f"{negation} {phrase}"
    if normalise(text) in TABLE:
        return  # itself a phrase of the table ("do not" + "text me" would be)
    assert match(text) is None


@PROFILE
@given(PHRASE, TOPIC)
def test_a_phrase_inside_a_sentence_is_chat(phrase: str, topic: list[str]) -> None:
    assert match(f"{phrase} {' '.join(topic)}") is None
