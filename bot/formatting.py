"""Pure text formatting: external text to safe Teams HTML, Teams HTML to plain text, display names."""

from __future__ import annotations

import html
import re
import string
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

DISPLAY_NAME_LIMIT = 256
_PLACEHOLDERS = frozenset({"name", "channel"})
# What a name loses: controls, format characters (zero-width spaces and joiners, the word joiner, bidi overrides and
# isolates, soft hyphens, tags), surrogates, private-use and unassigned code points. None of them shows, so a name
# padded with them looks like someone else's.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Letters and symbols that render as blank space: the Hangul fillers, the empty braille pattern, the combining
# grapheme joiner and the Khmer inherent vowels.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")
_ZWJ = "\u200d"
_PICTOGRAPHIC: tuple[tuple[int, int], ...] = (
    *((0x1F000, 0x1FAFF), (0x1FC00, 0x1FFFD), (0x2190, 0x21FF), (0x2300, 0x23FF), (0x2600, 0x27BF), (0x2B00, 0x2BFF)),
    *((0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3299), (0xA9, 0xA9), (0xAE, 0xAE), (0x203C, 0x203C)),
    *((0x2049, 0x2049), (0x2122, 0x2122), (0x2139, 0x2139)),
)
_URL = re.compile(r"\bhttps?://[^\s<>\"]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'*"
_HTML_SPACE = re.compile(r"([ \t\n\r\f]+)")  # only ASCII whitespace collapses in HTML
_BLOCK_TAGS = frozenset(
    "p div ul ol li blockquote pre codeblock h1 h2 h3 h4 h5 h6 table tr hr section article header footer"
    " address figure dl dt dd details summary attachment".split()
)
_FRAMED_TAGS = frozenset("a at li ul ol blockquote pre codeblock emoji attachment script style head title".split())
_DROPPED_TAGS = frozenset("script style head title".split())
_MAX_FRAMES = 64  # bounds the work on hostile nesting: deeper elements keep their text, not their rendering


def _remove_controls(text: str) -> str:
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def _tidy(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no blank edges."""
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip(" \t")
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip(" \t\n")


def clean_text(text: str) -> str:
    """The canonical plain form: what `html_to_text(text_to_html(text))` gives back."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    return _tidy(_remove_controls(text))


# ---------------------------------------------------------------- text → HTML


def _split_url(candidate: str) -> str:
    """Leave sentence punctuation and unbalanced closing brackets outside the link."""
    opened = {")": candidate.count("("), "]": candidate.count("["), "}": candidate.count("{")}
    closed = {close: candidate.count(close) for close in opened}
    while candidate:
        last = candidate[-1]
        if last in _URL_TRAILING:
            candidate = candidate[:-1]
        elif last in closed and closed[last] > opened[last]:
            closed[last] -= 1
            candidate = candidate[:-1]
        else:
            break
    try:
        has_host = bool(urlsplit(candidate).hostname)
    except ValueError:  # for example an unterminated IPv6 literal
        has_host = False
    return candidate if has_host else ""


def _escape_plain(text: str, at_line_start: bool) -> str:
    # Spaces that HTML would collapse (line-leading, or after another space) become &nbsp; so the spacing survives.
    lines = []
    for index, line in enumerate(html.escape(text, quote=True).split("\n")):
        if index > 0 or at_line_start:
            stripped = line.lstrip(" ")
            line = "&nbsp;" * (len(line) - len(stripped)) + stripped
        lines.append(re.sub(r"(?<= ) ", "&nbsp;", line).replace("\t", "&#9;"))
    return "<br>".join(lines)


def text_to_html(text: str) -> str:
    """Escape external text completely; only `<br>` and `<a href="http(s)://...">` links are produced."""
    text = _remove_controls(text.replace("\r\n", "\n").replace("\r", "\n"))
    out: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        url = _split_url(match.group())
        if not url:
            continue
        out.append(_escape_plain(text[position : match.start()], at_line_start=position == 0))
        escaped = html.escape(url, quote=True)
        out.append(f'<a href="{escaped}">{escaped}</a>')
        position = match.start() + len(url)
    out.append(_escape_plain(text[position:], at_line_start=position == 0))
    return "".join(out)


# ---------------------------------------------------------------- HTML → text


@dataclass
class _Frame:
    tag: str
    mark: int  # index in the output parts where the element's content starts
    attrs: dict[str, str]
    counter: int = 0
    marker: str = ""


class _Renderer(HTMLParser):
    """Renders Teams HTML as text; elements that rewrite their content keep a frame marking where it starts."""

    def __init__(self, attachments_note: bool) -> None:
        # Charrefs are decoded by us: whitespace written as a reference is content and must not collapse.
        super().__init__(convert_charrefs=False)
        self.attachments_note = attachments_note
        self.parts: list[str] = []
        self.frames: list[_Frame] = []
        self.space = False  # a collapsible space is waiting for the next visible content
        self.pre = 0

    def at_line_start(self) -> bool:
        return not self.parts or self.parts[-1].endswith("\n")

    def emit(self, text: str) -> None:
        if not text:
            return
        if self.space and not self.at_line_start():
            self.parts.append(" ")
        self.space = False
        self.parts.append(text)

    def block(self) -> None:
        self.space = False
        if not self.at_line_start():
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if "&" in data:  # leftovers the tokenizer could not match as references
            data = html.unescape(data)
        if self.pre:
            self.emit(data)
            return
        for piece in _HTML_SPACE.split(data):
            if piece and piece[0] in " \t\n\r\f":
                self.space = True
            else:
                self.emit(piece)

    def handle_entityref(self, name: str) -> None:
        self.emit(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.emit(html.unescape(f"&#{name};"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "br":
            self.space = False
            self.parts.append("\n")
        elif tag == "img":
            self.image(values)
        elif tag in ("td", "th"):
            self.space = True  # cells would otherwise run together
        marker = self.start_item() if tag == "li" else ""
        if tag in _BLOCK_TAGS:
            self.block()
        if tag in _FRAMED_TAGS and len(self.frames) < _MAX_FRAMES:
            if tag in ("pre", "codeblock"):
                self.pre += 1
            frame = _Frame(tag, len(self.parts), values, marker=marker)
            start = values.get("start", "1").strip() if tag == "ol" else ""
            frame.counter = int(start) - 1 if start.isdigit() and len(start) < 9 else 0
            self.frames.append(frame)

    def image(self, attrs: dict[str, str]) -> None:
        if "schema.skype.com/emoji" in attrs.get("itemtype", "").lower() and attrs.get("alt"):
            self.emit(attrs["alt"])
        elif self.attachments_note:
            self.space = True  # "[image][image]" would read as one token
            self.emit("[image]")

    def start_item(self) -> str:
        """Close an open item of the same list ("<li>a<li>b" is legal HTML) and return the new item's marker."""
        for index in range(len(self.frames) - 1, -1, -1):
            if self.frames[index].tag in ("ul", "ol"):
                break
            if self.frames[index].tag == "li":
                self.close_frames(index)
                break
        lists = [frame for frame in self.frames if frame.tag in ("ul", "ol")]
        if lists and lists[-1].tag == "ol":
            lists[-1].counter += 1
            return f"{lists[-1].counter}. "
        return "- "

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.frames) - 1, -1, -1):
            if self.frames[index].tag == tag:
                self.close_frames(index)
                break
        if tag in _BLOCK_TAGS:
            self.block()

    def close_frames(self, index: int) -> None:
        while len(self.frames) > index:
            frame = self.frames.pop()
            content = "".join(self.parts[frame.mark :])
            del self.parts[frame.mark :]
            rendered = self.render(frame, content)
            if rendered:  # no empty parts, so at_line_start looks at one part only
                self.parts.append(rendered)
            if frame.tag in ("pre", "codeblock"):
                self.pre -= 1
            if frame.tag in _BLOCK_TAGS:
                self.block()

    def render(self, frame: _Frame, content: str) -> str:
        lead = content[: len(content) - len(content.lstrip(" "))]
        core = content.strip(" ")
        tag, attrs = frame.tag, frame.attrs
        if tag in _DROPPED_TAGS:
            return ""
        if tag == "a":
            return lead + _render_link(core, attrs.get("href", "").strip())
        if tag == "at":
            return lead + ("" if not core or core.startswith("@") else "@") + core
        if tag == "emoji":
            return lead + (attrs.get("alt") or core)
        if tag == "attachment":
            name = " ".join((attrs.get("name") or attrs.get("title") or core).split())
            note = f"[file: {name}]" if name else "[file]"
            return lead + note if self.attachments_note else lead
        if tag in ("li", "blockquote") and not _tidy(content):
            return ""
        if tag == "li":
            first, *rest = _tidy(content).split("\n")
            return "\n".join([frame.marker + first] + [("  " + line if line else "") for line in rest])
        if tag == "blockquote":
            return "\n".join(("> " + line if line else ">") for line in _tidy(content).split("\n"))
        return content

    def close(self) -> None:
        super().close()
        self.close_frames(0)


def _bare(url: str) -> str:
    return re.sub(r"^(https?://|mailto:)", "", url.strip().lower()).rstrip("/")


def _render_link(text: str, href: str) -> str:
    scheme = href.split(":", 1)[0].lower() if ":" in href else ""
    if scheme not in ("http", "https", "mailto"):
        return text  # never surface javascript:, data: and friends
    if not text or _bare(text) == _bare(href):
        return href[len("mailto:") :] if scheme == "mailto" else href
    return f"{text} ({href})"


def html_to_text(html_text: str, *, attachments_note: bool = True) -> str:
    """Readable plain text from Teams HTML; never raises. Without the note, images and files are left out."""
    renderer = _Renderer(attachments_note=attachments_note)
    try:
        renderer.feed(html_text)
        renderer.close()
        text = "".join(renderer.parts)
    except Exception:  # the tokenizer has corner cases; a crude strip beats losing the message
        text = html.unescape(re.sub(r"<[^>]*>", " ", html_text))
    return clean_text(text)


# ---------------------------------------------------------------- names and relay


def _pictographic(ch: str) -> bool:
    """Close enough to Unicode's Extended_Pictographic for telling an emoji sequence's joiner from padding."""
    point = ord(ch)
    return ch == "\ufe0f" or any(low <= point <= high for low, high in _PICTOGRAPHIC)


def clean_name(value: str) -> str:
    """A person's name as Teams and SMS show it: one line of single spaces, NFC, without invisible characters. A
    zero-width joiner stays only between two emoji, where it joins them into one ("👩\u200d💻"). May be empty."""
    value = " ".join(value.split())  # whitespace (newlines, tabs) becomes one space, not nothing
    kept: list[str] = []
    for index, ch in enumerate(value):
        if ch == _ZWJ:
            following = value[index + 1 : index + 2]
            if kept and _pictographic(kept[-1]) and following and _pictographic(following):
                kept.append(ch)
        elif ch not in _FILLERS and unicodedata.category(ch) not in _INVISIBLE:
            kept.append(ch)
    # After the removal: a mark that followed a removed character may now compose with the letter before it.
    return " ".join(unicodedata.normalize("NFC", "".join(kept)).split())


def validate_template(template: str) -> None:
    """Raise ValueError unless the template uses only `{name}` and `{channel}`, without conversions or specs."""
    if not template.strip():
        raise ValueError("display-name template is empty")
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"display-name template {template!r} is malformed: {exc}") from exc
    for _literal, field_name, spec, conversion in fields:
        if field_name is None:
            continue
        if field_name not in _PLACEHOLDERS:
            raise ValueError(
                f"display-name template {template!r} has unknown placeholder {{{field_name}}};"
                " allowed are {name} and {channel}"
            )
        if spec or conversion:
            raise ValueError(f"display-name template {template!r}: placeholder {{{field_name}}} takes no format")


def display_name(template: str, *, name: str, channel: str) -> str:
    """The template filled with clean values: one line of at most 256 characters in which the template's fixed part
    (" (SMS)") is always whole. The name is cut to the room the rest leaves: cutting the whole afterwards would cut
    the suffix that tells Teams users this is not one of them."""
    validate_template(template)
    label = clean_name(channel)
    uses = sum(1 for _text, field, _spec, _conversion in string.Formatter().parse(template) if field == "name")
    room = (DISPLAY_NAME_LIMIT - len(template.format(name="", channel=label))) // max(uses, 1)
    shown = clean_name(name)[: max(room, 0)].rstrip()
    return clean_name(template.format(name=shown, channel=label))[:DISPLAY_NAME_LIMIT].rstrip()


def speaker_prefix(name: str, text: str) -> str:
    """`"Name: text"` for the shared identity mode, the name cleaned as display_name cleans it; a name with nothing
    visible leaves the text unprefixed (the doors refuse such names)."""
    clean = clean_name(name)[:DISPLAY_NAME_LIMIT].rstrip()
    return f"{clean}: {text}" if clean else text


def merge_texts(texts: list[str]) -> str:
    """One message from a backlog of one sender's messages, in order, one per line; blank ones are skipped."""
    return "\n".join(text for text in texts if text.strip())
