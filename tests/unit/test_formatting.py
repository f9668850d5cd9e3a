"""Tests for bot.formatting: escaping, HTML to text, display names, relay prefixes and merging."""

from __future__ import annotations

import unicodedata
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.formatting import (
    DISPLAY_NAME_LIMIT,
    clean_name,
    clean_text,
    display_name,
    html_to_text,
    merge_texts,
    speaker_prefix,
    text_to_html,
    validate_template,
)


class _Inspector(HTMLParser):
    """Records every piece of markup a renderer (Teams or a browser) would see in our output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.starts: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.ends: list[str] = []
        self.other: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.ends.append(tag)

    def handle_data(self, data: str) -> None:
        self.data.append(data)

    def handle_comment(self, data: str) -> None:
        self.other.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.other.append("decl")

    def handle_pi(self, data: str) -> None:
        self.other.append("pi")

    def unknown_decl(self, data: str) -> None:
        self.other.append("unknown_decl")


def inspect(markup: str) -> _Inspector:
    inspector = _Inspector()
    inspector.feed(markup)
    inspector.close()
    return inspector


def assert_safe(markup: str) -> None:
    found = inspect(markup)
    assert found.other == []
    assert {tag for tag, _ in found.starts} <= {"a", "br"}
    assert set(found.ends) <= {"a"}
    for tag, attrs in found.starts:
        if tag == "a":
            assert len(attrs) == 1 and attrs[0][0] == "href"
            href = attrs[0][1] or ""
            assert href.lower().startswith(("http://", "https://")), href
    assert not any(unicodedata.category(ch) == "Cc" for ch in markup)


# ---------------------------------------------------------------- text_to_html

TEXT_TO_HTML = [
    ("plain", "hello", "hello"),
    ("escapes", "a < b > c & d \" e ' f", "a &lt; b &gt; c &amp; d &quot; e &#x27; f"),
    ("script", "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("mention", '<at id="0">Boss</at>', "&lt;at id=&quot;0&quot;&gt;Boss&lt;/at&gt;"),
    ("entity stays literal", "&lt;", "&amp;lt;"),
    ("newline", "a\nb", "a<br>b"),
    ("crlf", "a\r\nb\rc", "a<br>b<br>c"),
    ("controls", "a\x00b\x07c\x1bd\x7fe\x85f", "abcdef"),
    ("spacing kept", "a  b", "a &nbsp;b"),
    ("indent kept", "  a\n b", "&nbsp;&nbsp;a<br>&nbsp;b"),
    ("tab", "a\tb", "a&#9;b"),
    ("url", "https://x.com/a", '<a href="https://x.com/a">https://x.com/a</a>'),
    ("url in text", "see http://x.com now", 'see <a href="http://x.com">http://x.com</a> now'),
    ("upper-case scheme", "HTTPS://X.COM", '<a href="HTTPS://X.COM">HTTPS://X.COM</a>'),
    ("trailing period", "go to https://x.com.", 'go to <a href="https://x.com">https://x.com</a>.'),
    ("trailing comma", "https://x.com/a, b", '<a href="https://x.com/a">https://x.com/a</a>, b'),
    ("parenthesised", "(https://x.com/a)", '(<a href="https://x.com/a">https://x.com/a</a>)'),
    (
        "balanced parens kept",
        "https://en.wikipedia.org/wiki/A_(b)",
        '<a href="https://en.wikipedia.org/wiki/A_(b)">https://en.wikipedia.org/wiki/A_(b)</a>',
    ),
    (
        "ampersand in url",
        "https://x.com/?a=1&b=2",
        '<a href="https://x.com/?a=1&amp;b=2">https://x.com/?a=1&amp;b=2</a>',
    ),
    (
        "quote ends url",
        'https://x.com/"onmouseover="alert(1)',
        '<a href="https://x.com/">https://x.com/</a>&quot;onmouseover=&quot;alert(1)',
    ),
    (
        "single quote in url escaped",
        "https://x.com/it's",
        '<a href="https://x.com/it&#x27;s">https://x.com/it&#x27;s</a>',
    ),
    ("angle bracket ends url", "<https://x.com>", '&lt;<a href="https://x.com">https://x.com</a>&gt;'),
    ("javascript not linked", "javascript:alert(1)", "javascript:alert(1)"),
    ("data not linked", "data:text/html,<b>x</b>", "data:text/html,&lt;b&gt;x&lt;/b&gt;"),
    ("ftp not linked", "ftp://x.com", "ftp://x.com"),
    ("no host", "https:// and https://.", "https:// and https://."),
    ("bad ipv6 host", "http://[abc", "http://[abc"),
    ("glued scheme not linked", "xhttps://x.com", "xhttps://x.com"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in TEXT_TO_HTML], ids=[c[0] for c in TEXT_TO_HTML])
def test_text_to_html(text: str, expected: str) -> None:
    assert text_to_html(text) == expected
    assert_safe(text_to_html(text))


# ---------------------------------------------------------------- html_to_text

EMOJI = '<img itemscope="" itemtype="http://schema.skype.com/Emoji" alt="😀" src="https://x/e.png">'
HTML_TO_TEXT = [
    ("mention", '<p>Hello <at id="0">Ann</at></p>', "Hello @Ann"),
    ("two-word mention", '<p><at id="0">Ann Lee</at> look</p>', "@Ann Lee look"),
    ("link with text", '<a href="https://x.com">the site</a>', "the site (https://x.com)"),
    ("link equal to url", '<a href="https://x.com/a">https://x.com/a</a>', "https://x.com/a"),
    ("link without scheme text", '<a href="https://x.com/">x.com</a>', "https://x.com/"),
    ("empty link", '<a href="https://x.com"></a>', "https://x.com"),
    ("javascript link", '<a href="javascript:alert(1)">click</a>', "click"),
    ("data link", '<a href="data:text/html;base64,AAAA">click</a>', "click"),
    ("mailto", '<a href="mailto:ann@x.com">ann@x.com</a>', "ann@x.com"),
    ("paragraphs", "<p>a</p><p>b</p>", "a\nb"),
    ("blank paragraphs collapse", "<p>a</p><p>&nbsp;</p><p>&nbsp;</p><p>b</p>", "a\n\nb"),
    ("br", "a<br>b<br/>c", "a\nb\nc"),
    ("br runs collapse", "a<br><br><br><br>b", "a\n\nb"),
    ("div", "<div>a</div><div><div>b</div></div>", "a\nb"),
    ("trimmed", "<p> </p><p>  a  </p><br><br>", "a"),
    ("source whitespace collapses", "<p>\n  a\n  b  </p>\n<p>c</p>", "a b\nc"),
    ("bullets", "<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
    ("numbers", "<ol><li>one</li><li>two</li></ol>", "1. one\n2. two"),
    ("ol start", '<ol start="3"><li>c</li></ol>', "3. c"),
    ("nested list", "<ul><li>a<ol><li>x</li><li>y</li></ol></li></ul>end", "- a\n  1. x\n  2. y\nend"),
    ("unclosed items", "<ul><li>a<li>b</ul>", "- a\n- b"),
    ("entities", "a &amp; b &lt;at&gt; &quot;q&quot; &#39;s &#x1F600;", 'a & b <at> "q" \'s 😀'),
    ("nbsp", "a&nbsp;b\xa0c", "a b c"),
    ("escaped round trip", "&amp;lt;", "&lt;"),
    ("unknown entity", "a &bogus; b", "a &bogus; b"),
    ("bare ampersand", "a & b", "a & b"),
    ("emoji image", f"<p>hi {EMOJI}</p>", "hi 😀"),
    ("emoji element", '<emoji id="smile" alt="🙂" title="Smile"></emoji>!', "🙂!"),
    ("image", '<p>look <img src="https://x/a.png" itemtype="http://schema.skype.com/AMSImage"></p>', "look [image]"),
    ("two images", '<img src="a"><img src="b">', "[image] [image]"),
    ("file", 'see<attachment id="1" name="plan.pdf"></attachment>', "see\n[file: plan.pdf]"),
    ("file without name", '<attachment id="1"></attachment>', "[file]"),
    ("script dropped", "<script>alert(1)</script>ok<style>p{color:red}</style>", "ok"),
    ("formatting dropped", "<b>bold</b> <i>it</i> <u>u</u> <s>s</s> <span style='x'>sp</span>", "bold it u s sp"),
    ("blockquote", "<blockquote><p>one</p><p>two</p></blockquote><p>reply</p>", "> one\n> two\nreply"),
    ("nested blockquote", "<blockquote>a<blockquote>b</blockquote></blockquote>", "> a\n> > b"),
    ("code block", "<pre><code>def f():\n    return 1</code></pre>", "def f():\n    return 1"),
    ("teams codeblock", '<codeblock class="Python"><code>x  =  1</code></codeblock>', "x  =  1"),
    ("inline code", "run <code>ls  -l</code>", "run ls -l"),
    ("unclosed tags", "<p>unclosed <b>bold <i>it", "unclosed bold it"),
    ("stray end tags", "a</b></p></at></a>b", "a\nb"),
    ("comment", "a<!-- hidden -->b", "ab"),
    ("table", "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
    ("heading", "<h1>Title</h1>body", "Title\nbody"),
    ("empty item dropped", "<ul><li></li><li>x</li></ul>", "- x"),
    ("hostile nesting", '<a href="https://x.com">' * 500 + "x", "x (https://x.com)" + " (https://x.com)" * 63),
    ("controls removed", "a&#1;b\x02c&#x7f;d", "abcd"),
    ("plain text", "just text", "just text"),
    ("lone bracket", "a < b", "a < b"),
]


@pytest.mark.parametrize(("markup", "expected"), [c[1:] for c in HTML_TO_TEXT], ids=[c[0] for c in HTML_TO_TEXT])
def test_html_to_text(markup: str, expected: str) -> None:
    assert html_to_text(markup) == expected


def test_html_to_text_without_attachment_notes() -> None:
    markup = f'<p>see {EMOJI}<img src="a"></p><attachment name="a.pdf"></attachment>'
    assert html_to_text(markup, attachments_note=False) == "see 😀"


@pytest.mark.parametrize("markup", ["<![foo", "<!", "</", '<a href="', "&#99999999999;", "<![CDATA[x", "<!--", "&#"])
def test_html_to_text_malformed(markup: str) -> None:
    assert isinstance(html_to_text(markup), str)


# ---------------------------------------------------------------- round trips

ROUND_TRIPS = [
    "hello",
    '<at id="0">Boss</at>',
    "<script>alert(1)</script>",
    "&lt; &amp; &#39;",
    "a  b\n  indented\n\tx",
    "see https://x.com/a?b=1&c=2. and (https://en.wikipedia.org/wiki/A_(b))",
    'https://x.com/"onmouseover="alert(1)',
    "javascript:alert(1)",
    "emoji 😀 and ÅÄÖ",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip(text: str) -> None:
    assert html_to_text(text_to_html(text)) == text


def test_text_to_html_long_bracket_tail() -> None:
    assert text_to_html("https://x.com/" + ")" * 20000).startswith('<a href="https://x.com/">')


def test_round_trip_normalises() -> None:
    assert html_to_text(text_to_html("  a\r\nb\x00c  \n\n\n\nd\n")) == "a\nbc\n\nd"
    assert clean_text("  a\r\nb\x00c  \n\n\n\nd\n") == "a\nbc\n\nd"


# ---------------------------------------------------------------- properties

URLS = st.sampled_from(
    ["https://x.com", "http://x.com/a_(b)", "https://x.com/?a=1&b='2'", "HTTP://X.COM/.", "https://", "ftp://x"]
)
PIECES = st.one_of(
    st.text(),
    URLS,
    st.sampled_from([" ", "  ", "\n", "\r\n", "\r", "\t", "\xa0", "&", "&amp;", "<", ">", '"', "'", ")", ".", "<at>"]),
)
TEXTS = st.lists(PIECES, max_size=12).map("".join)

TAGS = ["a", "at", "p", "div", "br", "img", "ul", "ol", "li", "blockquote", "pre", "code", "codeblock", "b", "i"]
TAGS += ["script", "style", "emoji", "attachment", "span", "table", "tr", "td"]
ATTRS = st.sampled_from(
    [
        "",
        ' href="https://x.com"',
        " href='javascript:x'",
        ' alt="😀"',
        ' itemtype="http://schema.skype.com/Emoji"',
        ' name="f.pdf"',
        ' start="2"',
        ' start="x"',
        " href",
        ' id="0"',
        " href=https://y.org/?a&b",
    ]
)
SOUP_PIECES = st.one_of(
    st.text(max_size=8),
    st.builds(
        lambda tag, attrs, close: f"<{'/' if close else ''}{tag}{attrs}>", st.sampled_from(TAGS), ATTRS, st.booleans()
    ),
    st.sampled_from(["<!--", "-->", "<![CDATA[", "]]>", "<!", "<?", "&#", "&#x", "&amp", "&nbsp;", "<", "</", ">"]),
)
SOUP = st.lists(SOUP_PIECES, max_size=30).map("".join)


@given(TEXTS)
def test_text_to_html_is_safe(text: str) -> None:
    assert_safe(text_to_html(text))


@given(TEXTS)
def test_text_round_trips(text: str) -> None:
    assert html_to_text(text_to_html(text)) == clean_text(text)


@given(st.text())
def test_html_to_text_on_arbitrary_text(text: str) -> None:
    result = html_to_text(text)
    assert not any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in result)


@settings(max_examples=300)
@given(SOUP)
def test_html_to_text_on_tag_soup(markup: str) -> None:
    result = html_to_text(markup)
    assert "\n\n\n" not in result
    assert result == result.strip(" \t\n")
    # Malformed markup may surface as literal text, but a javascript: target is never rendered as a link.
    assert "(javascript:" not in result


@given(st.text())
def test_clean_text_is_idempotent(text: str) -> None:
    assert clean_text(clean_text(text)) == clean_text(text)


# ---------------------------------------------------------------- display names

DISPLAY_NAMES = [
    ("default", "{name} ({channel})", "Ann", "SMS", "Ann (SMS)"),
    ("name only", "{name}", "Ann Lee", "SMS", "Ann Lee"),
    ("fixed text", "Guest", "Ann", "SMS", "Guest"),
    ("escaped braces", "{{{name}}}", "Ann", "SMS", "{Ann}"),
    ("braces in value", "{name}", "{channel}", "SMS", "{channel}"),
    ("whitespace collapsed", "{name}  ({channel})", " Ann \n\t Lee ", "SMS", "Ann Lee (SMS)"),
    ("controls removed", "{name}", "A\x00n\x1bn\x7f", "SMS", "Ann"),
    ("bidi override removed", "{name}", "Ann\u202eeeL", "SMS", "AnneeL"),
    ("emoji sequence kept", "{name}", "Ann 👩\u200d💻", "SMS", "Ann 👩\u200d💻"),
    ("empty name", "{name} ({channel})", "\x00 ", "SMS", "(SMS)"),
]


@pytest.mark.parametrize(
    ("template", "name", "channel", "expected"), [c[1:] for c in DISPLAY_NAMES], ids=[c[0] for c in DISPLAY_NAMES]
)
def test_display_name(template: str, name: str, channel: str, expected: str) -> None:
    assert display_name(template, name=name, channel=channel) == expected


def test_display_name_limit_cuts_the_name_and_keeps_the_suffix() -> None:
    result = display_name("{name} ({channel})", name="x" * 300, channel="SMS")
    assert result == "x" * (DISPLAY_NAME_LIMIT - len(" (SMS)")) + " (SMS)"
    # A name used twice shares the room; the fixed part " aka  (SMS)" stays whole.
    room = (DISPLAY_NAME_LIMIT - len(" aka  (SMS)")) // 2
    twice = display_name("{name} aka {name} ({channel})", name="y" * 300, channel="SMS")
    assert twice == f"{'y' * room} aka {'y' * room} (SMS)"


CLEAN_NAMES = [
    ("zero-width padding", "Megan Bowen" + "\u200b" * 245, "Megan Bowen"),
    ("fillers", "\u3164Megan\u115f Bowen\uffa0\u2800", "Megan Bowen"),
    ("word joiner and bom", "Me\u2060gan\ufeff Bowen", "Megan Bowen"),
    ("bidi isolates and marks", "\u2066Ann\u2069\u200f", "Ann"),
    ("tags", "Ann\U000e0041\U000e007f", "Ann"),
    ("composed", "Zoe\u0308", "Zo\u00eb"),
    ("composed across a removed character", "Zoe\u200b\u0308", "Zo\u00eb"),
    ("emoji sequences keep their joiner", "Ann \U0001f469\u200d\U0001f4bb \u2764\ufe0f\u200d\U0001f525", None),
    ("a joiner between letters goes", "A\u200dnn \u200d\U0001f469", "Ann \U0001f469"),
    ("nothing visible", "\u200b\u3164 \u00ad", ""),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in CLEAN_NAMES], ids=[c[0] for c in CLEAN_NAMES])
def test_clean_name(value: str, expected: str | None) -> None:
    assert clean_name(value) == (value if expected is None else expected)


@given(st.text())
def test_clean_name_leaves_nothing_invisible_and_is_idempotent(value: str) -> None:
    cleaned = clean_name(value)
    assert clean_name(cleaned) == cleaned
    assert cleaned == cleaned.strip() and "  " not in cleaned
    assert not any(unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") for ch in cleaned)
    assert all(ch == "\u200d" for ch in cleaned if unicodedata.category(ch) == "Cf")


BAD_TEMPLATES = [
    ("{nam}", "unknown placeholder {nam}"),
    ("{0}", "unknown placeholder {0}"),
    ("{}", "unknown placeholder {}"),
    ("{name.__class__}", "unknown placeholder"),
    ("{name[0]}", "unknown placeholder"),
    ("{name!r}", "takes no format"),
    ("{name:>30}", "takes no format"),
    ("{name", "malformed"),
    ("name}", "malformed"),
    ("", "empty"),
    ("  ", "empty"),
]


@pytest.mark.parametrize(("template", "reason"), BAD_TEMPLATES)
def test_bad_templates(template: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("{", r"\{").replace("}", r"\}")):
        validate_template(template)
    with pytest.raises(ValueError):
        display_name(template, name="Ann", channel="SMS")


@pytest.mark.parametrize("template", ["{name} ({channel})", "{channel}: {name}", "Guest", "{{literal}}"])
def test_good_templates(template: str) -> None:
    validate_template(template)


@given(st.text(), st.text())
def test_display_name_is_one_clean_line(name: str, channel: str) -> None:
    result = display_name("{name} ({channel})", name=name, channel=channel)
    assert len(result) <= DISPLAY_NAME_LIMIT
    assert result == result.strip()
    assert "  " not in result
    assert not any(ch.isspace() and ch != " " for ch in result)
    assert not any(unicodedata.category(ch) == "Cc" for ch in result)


# ---------------------------------------------------------------- relay and merge


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("Ann (SMS)", "hello", "Ann (SMS): hello"),
        ("Ann\nLee\x00", "hi\nthere", "Ann Lee: hi\nthere"),
        ("\u202eAnn", "x", "Ann: x"),
        ("\x00 \n", "x", "x"),
    ],
)
def test_speaker_prefix(name: str, text: str, expected: str) -> None:
    assert speaker_prefix(name, text) == expected


def test_speaker_prefix_is_escaped_downstream() -> None:
    assert (
        text_to_html(speaker_prefix('<at id="0">Boss</at>', "hi")) == "&lt;at id=&quot;0&quot;&gt;Boss&lt;/at&gt;: hi"
    )


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], ""),
        (["one"], "one"),
        (["one", "two", "three"], "one\ntwo\nthree"),
        (["a\nb", "", "  ", "c"], "a\nb\nc"),
    ],
)
def test_merge_texts(texts: list[str], expected: str) -> None:
    assert merge_texts(texts) == expected
