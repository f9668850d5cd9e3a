"""SMS-shaped text (pure): GSM-7 or UCS-2, segment counts, fitting a segment cap, sender prefixes, bursts."""

from __future__ import annotations

from typing import Literal

from .formatting import clean_name

Encoding = Literal["GSM-7", "UCS-2"]
Policy = Literal["truncate", "split"]

# GSM 03.38 default alphabet (one septet each) and its extension table (escape + septet: two each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
# Units per single text, and per part of a concatenated one (the rest of each part is the joining header).
_GSM7_SINGLE, _GSM7_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67
GSM7_MARKER = "..."
SENDER_MAX = 20
"""Characters of a sender's name kept in a prefix: a phone screen is narrow and every character is paid for."""
# Typographic characters that phones and Teams put in ordinary text; each alone would make a text UCS-2.
_GSM7_LOOKALIKES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u2007": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\t": " ",
        "\u2022": "-",
        "\u00b7": "-",
    }
)


def is_gsm7(text: str) -> bool:
    """Whether every character is in the GSM 03.38 default alphabet or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def encoding(text: str) -> Encoding:
    """GSM-7 when every character allows it, UCS-2 (UTF-16 on the wire) otherwise."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def _atoms(text: str, gsm: bool) -> list[int]:
    """The size of each unit that must stay in one part: septets for GSM-7, UTF-16 code units for UCS-2.

    An extension character (escape + septet) and a surrogate pair are atoms of size 2. Python strings hold
    astral characters as one code point, but a high and a low surrogate can also arrive as two code points
    (decoded with surrogatepass): such a pair is one atom too, and a lone surrogate counts one unit.
    """
    if gsm:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    sizes: list[int] = []
    high = False
    for ch in text:
        code = ord(ch)
        if high and 0xDC00 <= code <= 0xDFFF:
            sizes[-1] = 2
            high = False
            continue
        high = 0xD800 <= code <= 0xDBFF
        sizes.append(2 if code > 0xFFFF else 1)
    return sizes


def _pack(sizes: list[int], single: int, part: int) -> int:
    """Parts needed, filling each part greedily without splitting an atom across two parts."""
    if sum(sizes) <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts


def segments(text: str) -> int:
    """How many SMS parts the text is sent as; an empty text still takes one."""
    if is_gsm7(text):
        return _pack(_atoms(text, gsm=True), _GSM7_SINGLE, _GSM7_PART)
    return _pack(_atoms(text, gsm=False), _UCS2_SINGLE, _UCS2_PART)


def _splits_pair(text: str, cut: int) -> bool:
    return 0 < cut < len(text) and "\ud800" <= text[cut - 1] <= "\udbff" and "\udc00" <= text[cut] <= "\udfff"


def _longest(text: str, fits_prefix: int, cap: int, suffix: str = "") -> int:
    """The largest cut such that text[:cut] + suffix fits in cap segments (0 when even the suffix alone is over).

    Segments grow with the prefix (a character never shrinks the count, and UCS-2 never holds more than GSM-7),
    so a binary search finds it; `fits_prefix` bounds the search to what cap segments could ever hold.
    """
    low, high = 0, min(len(text), fits_prefix)
    if segments(suffix) > cap:
        return 0
    while low < high:
        middle = (low + high + 1) // 2
        if segments(text[:middle] + suffix) <= cap:
            low = middle
        else:
            high = middle - 1
    if _splits_pair(text, low):
        low -= 1
    return low


def _marker_for(kept: str, marker: str) -> str:
    # A GSM-7 text cut with "…" would become UCS-2 and hold less than half as much: "..." keeps it GSM-7.
    return GSM7_MARKER if is_gsm7(kept) and not is_gsm7(marker) else marker


def _word_cut(text: str, cut: int) -> int:
    """Move a cut that falls inside a word back to the last whitespace, unless that loses over half of the text."""
    if cut <= 0 or cut >= len(text) or text[cut].isspace() or text[cut - 1].isspace():
        return cut
    for index in range(cut - 1, cut // 2, -1):
        if text[index].isspace():
            return index + 1
    return cut


def _truncate(text: str, cap: int, marker: str) -> str:
    bound = cap * _GSM7_SINGLE
    cuts = {_longest(text, bound, cap, marker)}
    if not is_gsm7(marker):
        # The kept part decides the marker, so the longest GSM-7 start of the text may keep more with "...".
        gsm_end = next((i for i, ch in enumerate(text) if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION), len(text))
        cuts.add(_longest(text[:gsm_end], bound, cap, GSM7_MARKER))
    for cut in sorted(cuts, reverse=True):
        for candidate in (_word_cut(text, cut), cut):
            kept = text[:candidate].rstrip()
            result = kept + _marker_for(kept, marker)
            if segments(result) <= cap:
                return result
    # Only a marker that alone is over the cap gets here: cut without one.
    return text[: _longest(text, bound, cap)]


def _split(text: str, cap: int) -> list[str]:
    parts: list[str] = []
    bound = cap * _GSM7_SINGLE
    start = 0
    while start < len(text):
        rest = text[start:]
        cut = _longest(rest, bound, cap)
        if cut == 0:  # cannot happen with cap >= 1 (any atom fits one segment); guards the loop all the same
            cut = 1
        cut = _word_cut(rest, cut)
        parts.append(rest[:cut])
        start += cut
    return parts or [text]


def fit(text: str, cap_segments: int, policy: Policy, marker: str = "…") -> list[str]:
    """The text as texts of at most cap_segments segments each.

    truncate: one text, cut (at a word boundary when one is near) and ending with the marker when cut; the
    marker "…" is UCS-2, so a cut that is otherwise GSM-7 ends with "..." instead. split: as many texts as
    needed, cut at whitespace where possible, never inside a surrogate pair or an extension character; joined
    they give the text back exactly. ValueError for a cap below 1 or an unknown policy.
    """
    if cap_segments < 1:
        raise ValueError(f"cap_segments must be at least 1, not {cap_segments}")
    if policy not in ("truncate", "split"):
        raise ValueError(f"policy must be truncate or split, not {policy!r}")
    if segments(text) <= cap_segments:
        return [text]
    if policy == "truncate":
        return [_truncate(text, cap_segments, marker)]
    return _split(text, cap_segments)


def simplify(text: str) -> str:
    """Typographic quotes, dashes, ellipses and odd spaces as their GSM-7 look-alikes, when that makes the whole
    text GSM-7 (about twice the characters per segment) without costing a segment; otherwise the text unchanged.
    An ellipsis becomes three characters, so a text thick with them can need more segments as GSM-7."""
    plain = text.translate(_GSM7_LOOKALIKES)
    return plain if plain != text and is_gsm7(plain) and segments(plain) <= segments(text) else text


def sender_label(sender: str) -> str:
    """The sender's name as a prefix shows it: one line, no controls, at most SENDER_MAX characters."""
    name = clean_name(sender)
    if len(name) <= SENDER_MAX:
        return name
    cut = name[: SENDER_MAX + 1]
    # Keep whole words ("Megan Bowen (Contoso)" → "Megan Bowen") unless the first word alone is too long.
    space = cut.rfind(" ")
    short = cut[:space] if space > 0 else name[:SENDER_MAX]
    if short and "\ud800" <= short[-1] <= "\udbff":
        short = short[:-1]
    if short.count("(") > short.count(")") and short.rfind("(") > 0:  # "Megan Bowen (Contoso" → "Megan Bowen"
        short = short[: short.rfind("(")]
    return short.rstrip(" ,;:-(")


def prefix(sender: str, text: str) -> str:
    """`"Megan: text"`; a sender with nothing visible leaves the text unprefixed."""
    label = sender_label(sender)
    return f"{label}: {text}" if label else text


def combine(items: list[tuple[str, str]]) -> str:
    """One text from a burst of (sender, text): one line per message, consecutive messages of the same sender
    under one prefix, blank messages skipped; an empty burst gives ""."""
    lines: list[str] = []
    previous: str | None = None
    for sender, text in items:
        body = text.strip()
        if not body:
            continue
        label = sender_label(sender)
        lines.append(body if label == previous else prefix(label, body))
        previous = label
    return "\n".join(lines)
