"""Tests for bot.sms_text: GSM-7/UCS-2 detection, segment counting at the boundaries, fitting a cap, prefixes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.sms_text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SENDER_MAX,
    combine,
    encoding,
    fit,
    is_gsm7,
    prefix,
    segments,
    sender_label,
    simplify,
)

EMOJI = "\U0001f600"  # 😀, a surrogate pair in UTF-16
UCS = "ж"  # one UTF-16 unit, not GSM-7
EXT = "€"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("a" * 459, 3),
        ("a" * 460, 4),
        (UCS * 70, 1),
        (UCS * 71, 2),
        (UCS * 134, 2),
        (UCS * 135, 3),
        (UCS * 201, 3),
        (UCS * 202, 4),
        # Extension characters count two septets.
        (EXT * 80, 1),
        (EXT * 81, 2),
        ("a" * 159 + "[", 2),
        ("a" * 158 + "[", 1),
        # 152 septets then an extension character: it cannot straddle the 153 boundary, so it opens part two.
        ("a" * 152 + EXT + "a" * 152, 3),
        ("a" * 152 + EXT + "a" * 151, 2),
        ("a" * 151 + EXT + "a" * 153, 2),
        ("a" * 153 + EXT + "a" * 151, 2),
        # Emoji force UCS-2 and count two code units.
        (EMOJI, 1),
        ("a" * 69 + EMOJI, 2),
        ("a" * 68 + EMOJI, 1),
        (EMOJI * 35, 1),
        (EMOJI * 36, 2),
        # A surrogate pair cannot straddle the 67 boundary either.
        (UCS * 66 + EMOJI + UCS * 66, 3),
        (UCS * 66 + EMOJI + UCS * 65, 2),
        (UCS * 65 + EMOJI + UCS * 67, 2),
        # A pair given as two code points (surrogatepass) is one atom; a lone surrogate is one unit.
        ("\ud83d\ude00" * 35, 1),
        ("\ud83d\ude00" * 36, 2),
        ("\ud83d" * 70, 1),
        ("\ud83d" * 71, 2),
    ],
)
def test_segments_boundaries(text: str, expected: int) -> None:
    assert segments(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, world! @£$¥ èéùìò ÄÖÑÜ §¿¡ ΔΦΓΛΩΠΨΣΘΞ", "GSM-7"),
        ("brackets [x] {y} ~z^ a|b \\ €\f", "GSM-7"),
        ("line\nbreak\r", "GSM-7"),
        ("", "GSM-7"),
        ("naïve", "UCS-2"),  # ï is not in GSM 03.38
        ("don\u2019t", "UCS-2"),  # typographic apostrophe
        ("ok …", "UCS-2"),
        ("tab\there", "UCS-2"),
        ("hi " + EMOJI, "UCS-2"),
        ("ç", "UCS-2"),  # only the capital Ç is in the basic set
        ("`", "UCS-2"),
    ],
)
def test_encoding(text: str, expected: str) -> None:
    assert encoding(text) == expected
    assert is_gsm7(text) == (expected == "GSM-7")


def test_alphabet_sizes() -> None:
    # 128 code points less ESC, which is not a character; the extension table's ten characters include form feed.
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_one_emoji_makes_a_long_text_ucs2() -> None:
    assert segments("a" * 160) == 1
    assert segments("a" * 159 + EMOJI) == 3  # 161 code units over 67-unit parts


# ---------------------------------------------------------------- fit


def test_fit_leaves_a_text_within_the_cap_alone() -> None:
    for policy in ("truncate", "split"):
        assert fit("a" * 160, 1, policy) == ["a" * 160]
        assert fit("", 1, policy) == [""]
        assert fit(UCS * 134, 2, policy) == [UCS * 134]


def test_truncate_gsm7_uses_ascii_marker() -> None:
    text = "word " * 100
    [cut] = fit(text, 1, "truncate")
    assert cut.endswith("word...")
    assert encoding(cut) == "GSM-7"
    assert segments(cut) == 1
    assert len(cut) > 150  # cut at the word boundary nearest 160 septets


def test_truncate_ucs2_uses_the_marker() -> None:
    text = "слово " * 100
    [cut] = fit(text, 2, "truncate")
    assert cut.endswith("слово…")
    assert segments(cut) == 2
    assert len(cut) > 120


def test_truncate_custom_gsm_marker_kept() -> None:
    [cut] = fit("x" * 500, 1, "truncate", marker=" [more]")
    assert cut == "x" * 151 + " [more]"  # the brackets are extension characters: the marker takes 9 septets


def test_truncate_ucs2_text_whose_kept_part_is_gsm7() -> None:
    # The emoji comes after the cut: what is sent is GSM-7, so it may hold 160 septets, not 70 units.
    text = "a" * 400 + EMOJI
    [cut] = fit(text, 1, "truncate")
    assert cut == "a" * 157 + "..."


def test_truncate_without_room_for_the_marker_cuts_plainly() -> None:
    [cut] = fit("a" * 400, 1, "truncate", marker="!" * 200)
    assert cut == "a" * 160


def test_truncate_does_not_break_an_extension_char_or_pair() -> None:
    [cut] = fit(EXT * 200, 1, "truncate")
    assert cut == EXT * 78 + "..."
    [cut] = fit(EMOJI * 100, 1, "truncate")
    assert cut == EMOJI * 34 + "…"


def test_split_gsm7_at_whitespace_and_lossless() -> None:
    text = " ".join(f"w{i:03d}" for i in range(200))
    parts = fit(text, 1, "split")
    assert "".join(parts) == text
    assert all(segments(part) == 1 for part in parts)
    assert all(part.endswith(" ") or part.startswith(" ") for part in parts[:-1])


def test_split_extension_char_moves_to_next_part() -> None:
    text = "a" * 152 + EXT + "a" * 200
    parts = fit(text, 2, "split")
    # Part one of the first text holds 152 septets; the euro opens part two, which 151 more letters fill.
    assert parts == [text[:304], text[304:]]
    assert segments(parts[0]) == 2


def test_split_hard_cuts_a_long_word() -> None:
    text = "x" * 400
    assert fit(text, 1, "split") == ["x" * 160, "x" * 160, "x" * 80]


def test_split_never_breaks_a_surrogate_pair() -> None:
    text = "\ud83d\ude00" * 100  # two code points per emoji, as surrogatepass decoding gives them
    parts = fit(text, 1, "split")
    assert "".join(parts) == text
    for part in parts:
        assert not part.startswith("\ude00")
        assert segments(part) == 1


def test_fit_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        fit("x", 0, "split")
    with pytest.raises(ValueError):
        fit("x", 1, "drop")  # type: ignore[arg-type]  # a policy outside the Literal: the runtime refusal is tested


# ---------------------------------------------------------------- prefixes and bursts


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("Megan", "Megan"),
        ("  Megan\n Bowen ", "Megan Bowen"),
        ("Megan Bowen (Contoso Ltd)", "Megan Bowen"),
        ("Bartholomew-Fitzgerald-Smythe", "Bartholomew-Fitzgera"),
        ("\u202eevil\x07", "evil"),
        ("   ", ""),
    ],
)
def test_sender_label(sender: str, expected: str) -> None:
    assert sender_label(sender) == expected
    assert len(sender_label(sender)) <= SENDER_MAX


def test_prefix() -> None:
    assert prefix("Megan", "hello") == "Megan: hello"
    assert prefix("", "hello") == "hello"


def test_combine_groups_consecutive_senders() -> None:
    burst = [("Megan", "hi"), ("Megan", "  there "), ("Alex", "yo"), ("Alex", "   "), ("Megan", "back")]
    assert combine(burst) == "Megan: hi\nthere\nAlex: yo\nMegan: back"
    assert combine([]) == ""
    assert combine([("Megan", " ")]) == ""


def test_simplify_only_when_it_makes_gsm7() -> None:
    assert simplify("don\u2019t \u2013 ok\u2026") == "don't - ok..."
    assert simplify("don\u2019t " + EMOJI) == "don\u2019t " + EMOJI
    assert simplify("plain") == "plain"


# ---------------------------------------------------------------- properties

_gsm_chars = st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION))
_texts = st.one_of(
    st.text(),
    st.text(alphabet=_gsm_chars, max_size=800),
    st.text(alphabet=st.one_of(_gsm_chars, st.just(EMOJI), st.just(" "), st.just(UCS)), max_size=800),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=400),  # lone surrogates too
)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_segments_never_raises_and_grows(text: str) -> None:
    count = segments(text)
    assert count >= 1
    assert segments(text + "a") >= count


@settings(max_examples=300, deadline=None)
@given(_texts, st.integers(min_value=1, max_value=4), st.sampled_from(["…", "...", " [cut]", "»"]))
def test_truncate_respects_the_cap(text: str, cap: int, marker: str) -> None:
    if segments(text) <= cap:
        assert fit(text, cap, "truncate", marker) == [text]
        return
    [out] = fit(text, cap, "truncate", marker)
    assert segments(out) <= cap
    assert out != text
    if is_gsm7(marker):
        assert out.endswith(marker)
    else:
        assert out.endswith((marker, "..."))
        # A cut whose kept part is GSM-7 never turns UCS-2 for the sake of the marker.
        assert not (out.endswith(marker) and is_gsm7(out[: -len(marker)]))


@settings(max_examples=300, deadline=None)
@given(_texts, st.integers(min_value=1, max_value=4))
def test_split_respects_the_cap_and_loses_nothing(text: str, cap: int) -> None:
    parts = fit(text, cap, "split")
    assert "".join(parts) == text
    assert all(segments(part) <= cap for part in parts)
    assert all(parts) or parts == [""]
    for before, after in itertools.pairwise(parts):
        assert not ("\ud800" <= before[-1] <= "\udbff" and "\udc00" <= after[0] <= "\udfff")
