"""HTML sanitising, plain-text rendering, the framed document, and the hostile corpus."""

from __future__ import annotations

import re
import time
from html import escape
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail.mime import parse_message
from gateway.mail.sanitize import (
    TAGS,
    frame_csp,
    frame_document,
    html_to_text,
    sanitize_html,
    text_to_html,
)
from tests.mail.hostile_corpus import TRACKER, hostile_messages

FUZZ = settings(max_examples=300, deadline=None)
CORPUS = hostile_messages()


def cid(content_id: str) -> str | None:
    return f"/cid/{content_id}" if content_id == "logo@x" else None


def clean(html: str, allow: bool = False) -> str:
    return sanitize_html(html, allow_remote_images=allow, cid_url=cid).html


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def parsed(html: str) -> Collector:
    collector = Collector()
    collector.feed(html)
    collector.close()
    return collector


def assert_safe(html: str, allow_remote: bool) -> None:
    """No script, no handler, no dangerous scheme, and no remote load unless allowed."""
    assert "<script" not in html.lower()
    for tag, attrs in parsed(html).tags:
        assert tag in TAGS, tag
        for name, value in attrs:
            squeezed = re.sub(r"[\x00-\x20]", "", value or "").lower()
            assert not name.startswith("on"), (tag, name)
            assert name not in ("srcset", "background", "poster", "action", "formaction",
                                "srcdoc", "xlink:href", "class", "id"), (tag, name)
            for bad in ("javascript:", "vbscript:", "data:text", "expression(", "url("):
                assert bad not in squeezed, (tag, name, value)
            if name == "src":
                allowed = ("/cid/", "data:image/") + (("https://",) if allow_remote else ())
                assert squeezed.startswith(allowed), value
    if not allow_remote:
        assert TRACKER not in html


# ---- sanitize_html ----------------------------------------------------------------------

def test_scripts_handlers_and_dangerous_elements_go() -> None:
    """script/style/iframe/object/form/meta/base are removed; handlers never survive."""
    html = clean('<p onclick="x()">hi</p><script>alert(1)</script><style>p{}</style>'
                 '<iframe src="https://e"></iframe><form action="https://e"><input></form>'
                 '<meta http-equiv="refresh" content="0"><base href="https://e/">')
    assert html == "<p>hi</p>"


def test_links_get_noopener_and_new_tab_and_only_safe_schemes() -> None:
    """Links keep http(s)/mailto/tel and always open in a new tab without an opener."""
    html = clean('<a href="https://ok.example/" target="_self" rel="opener">a</a>'
                 '<a href="mailto:x@y.example">b</a><a href="tel:+441234">c</a>'
                 '<a href="javascript&#58;alert(1)">d</a><a href="data:text/html,x">e</a>'
                 '<a href="#frag">f</a><a href="cid:logo@x">g</a>')
    links = [dict(attrs) for tag, attrs in parsed(html).tags if tag == "a"]
    assert [link.get("href") for link in links] == [
        "https://ok.example/", "mailto:x@y.example", "tel:+441234", None, None, None, None]
    assert all(link["rel"] == "noopener noreferrer" and link["target"] == "_blank"
               for link in links)


def test_cid_images_map_to_gateway_urls_or_go() -> None:
    """cid: images use the callback's URL; unknown content ids are dropped."""
    assert clean('<img src="cid:logo@x"><img src="CID:%3Clogo@x%3E"><img src="cid:nope">') == (
        '<img src="/cid/logo@x"><img src="/cid/logo@x"><img>')


def test_remote_images_blocked_and_counted_unless_allowed() -> None:
    """Remote images are removed and counted; when allowed, only https: ones stay."""
    html = ('<img src="https://t.example/a.gif"><img src="http://t.example/b.gif">'
            '<img src="//t.example/c.gif"><img src="/relative.gif">')
    blocked = sanitize_html(html, allow_remote_images=False, cid_url=cid)
    assert (blocked.html, blocked.blocked_remote, blocked.had_remote) == (
        "<img><img><img><img>", 3, True)
    allowed = sanitize_html(html, allow_remote_images=True, cid_url=cid)
    assert allowed.html == '<img src="https://t.example/a.gif"><img><img><img>'
    assert (allowed.blocked_remote, allowed.had_remote) == (2, True)
    assert not sanitize_html("<p>x</p>", allow_remote_images=False, cid_url=cid).had_remote


def test_data_images_only_small_raster_base64() -> None:
    """data: images pass only as base64 png/gif/jpeg/webp under the size bound."""
    assert clean('<img src="data:image/png;base64,iVBORw0KGgo=">') == (
        '<img src="data:image/png;base64,iVBORw0KGgo=">')
    for bad in ("data:image/svg+xml;base64,PHN2Zz4=", "data:text/html;base64,PHA+",
                "data:image/png,rawpixels", "data:image/png;base64," + "A" * 600_000):
        assert clean(f'<img src="{bad}">') == "<img>"


def test_inline_styles_are_filtered_to_safe_properties() -> None:
    """Allowed properties stay; url(), expression(), escapes, comments, position go."""
    html = clean('<p style="color: red; COLOR: blue; position: fixed; font-family: &quot;Segoe'
                 ' UI&quot;, sans-serif; width: expression(alert(1)); background: u\\72l(x);'
                 ' background-color: rgb(1, 2, 3); margin: 0 /* x */ 1px">x</p>')
    style = dict(parsed(html).tags[0][1])["style"]
    assert style is not None
    assert "position" not in style and "expression" not in style and "url" not in style
    assert "color:red" in style and "color:blue" in style and "rgb(1, 2, 3)" in style
    assert "Segoe UI" in style and "margin" not in style


def test_css_background_images_count_as_blocked_remote() -> None:
    """A url() in a style is never fetched and is counted, even when images are allowed."""
    result = sanitize_html('<div style="background:url(https://t.example/bg.png)">x</div>',
                           allow_remote_images=True, cid_url=cid)
    assert (result.html, result.blocked_remote, result.had_remote) == ("<div>x</div>", 1, True)


@pytest.mark.parametrize("vector", [
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<svg></p><style><a id="</style><img src=1 onerror=alert(1)>">',
    "<form><math><mtext></form><form><mglyph><style></math><img src onerror=alert(1)>",
    '<svg><animate attributeName="href " values="javascript:alert(1)"/><a>x</a></svg>',
    "<template><img src=x onerror=alert(1)></template>",
    "<!--><img src=x onerror=alert(1)>-->",
])
def test_mutation_xss_vectors(vector: str) -> None:
    """Namespace-confusion and raw-text tricks come out inert."""
    assert_safe(clean(vector), allow_remote=False)


def test_deep_nesting_and_attribute_bombs_are_simplified_quickly() -> None:
    """100,000 nested divs or attributes render as text in well under the nh3 worst case."""
    for html in ("<div>" * 100_000 + "bottom", "<div " + " ".join(
            f"a{i}=1" for i in range(100_000)) + ">bottom</div>"):
        started = time.perf_counter()
        result = sanitize_html(html, allow_remote_images=False, cid_url=cid)
        assert time.perf_counter() - started < 2.0
        assert result.simplified and result.html == "bottom"


def test_oversized_html_is_simplified_not_sanitised() -> None:
    """Input over the limit comes back as escaped text, marked simplified."""
    result = sanitize_html("<p>" + "x<script>y</script>" * 20, allow_remote_images=False,
                           cid_url=cid, max_chars=100)
    assert result.simplified and "<script" not in result.html and len(result.html) < 200


def test_ordinary_nesting_is_not_simplified() -> None:
    """Real newsletters nest tables a few dozen deep; that stays HTML."""
    html = "<table><tr><td>" * 60 + "cell" + "</td></tr></table>" * 60
    assert not sanitize_html(html, allow_remote_images=False, cid_url=cid).simplified


tag_soup = st.lists(st.sampled_from([
    "<script>", "</script>", "<svg>", "<math>", "<style>", "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">', "<a href=https://t.example>", "</a>", "<div>", "</div>",
    "<noscript>", "</noscript>", '<p title="', '">', "<!--", "-->", "<iframe>", "<template>",
    '<div style="background:url(https://tracker.example/x)">', "text", "&lt;", "&#106;",
    "<table>", "<td>", "<![CDATA[", "]]>", "<textarea>", "<xmp>", "<img src=cid:logo@x>",
]), max_size=40).map("".join)


@FUZZ
@given(tag_soup)
def test_fuzz_tag_soup_is_always_safe(html: str) -> None:
    """Random mixes of hostile fragments always sanitise to safe output."""
    assert_safe(clean(html), allow_remote=False)


# ---- text_to_html and html_to_text ------------------------------------------------------

def test_text_to_html_escapes_links_and_keeps_line_breaks() -> None:
    """Markup is escaped; URLs and addresses become links; trailing punctuation stays text."""
    html = text_to_html('Hi <b>&\nsee https://x.example/a?b=1&c=2. or (https://y.example/p)'
                        ', mail a.b@council.example!\r\n"https://q.example/"onmouseover="x"')
    assert html.startswith("Hi &lt;b&gt;&amp;<br>\nsee ")
    assert '<a href="https://x.example/a?b=1&amp;c=2" rel="noopener noreferrer" ' in html
    assert '>https://x.example/a?b=1&amp;c=2</a>. or (' in html
    assert '>https://y.example/p</a>), mail ' in html
    assert '<a href="mailto:a.b@council.example"' in html
    assert 'href="https://q.example/"' in html and "onmouseover=" not in html.replace(
        "&quot;onmouseover=&quot;", "")
    assert_safe(html, allow_remote=False)


@FUZZ
@given(st.text())
def test_text_to_html_round_trips_any_text(text: str) -> None:
    """For any text the output holds only a/br tags and reads back as the same text."""
    html = text_to_html(text)
    collector = parsed(html)
    assert {tag for tag, _ in collector.tags} <= {"a", "br"}
    for tag, attrs in collector.tags:
        if tag == "a":
            href = dict(attrs)["href"] or ""
            assert href.startswith(("http://", "https://", "mailto:"))
    expected = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text.replace("\r\n", "\n"))
    assert "".join(collector.data) == expected


def test_text_to_html_is_linear_on_long_runs() -> None:
    """Long runs of address characters do not make the link finder quadratic."""
    started = time.perf_counter()
    text_to_html("a" * 500_000 + "@" + "b" * 500_000 + " " + "x." * 200_000)
    assert time.perf_counter() - started < 2.0


def test_html_to_text_blocks_entities_and_hidden_content() -> None:
    """Blocks become line breaks, entities decode, head/script/style content is dropped."""
    text = html_to_text("<html><head><title>T</title><style>p{}</style></head><body>"
                        "<p>Hello&nbsp;there</p><div>line <b>two</b></div><script>x</script>"
                        "a < b &amp; c<br>end</body>")
    assert text == "Hello there\n\nline two\na < b & c\nend"


# ---- the framed document ----------------------------------------------------------------

def test_frame_csp_depends_on_remote_images() -> None:
    """Remote images add https: to img-src and nothing else; scripts stay off."""
    assert frame_csp(False) == ("default-src 'none'; img-src 'self' data:; style-src "
                                "'unsafe-inline'; font-src 'none'; form-action 'none'; "
                                "base-uri 'none'")
    assert "img-src 'self' data: https:;" in frame_csp(True)
    assert "script-src" not in frame_csp(True)


def test_frame_document_carries_csp_base_and_stylesheet() -> None:
    """The document has the CSP meta (escaped), base target, viewport, and the body."""
    doc = frame_document("<p>hi</p>", frame_csp(False))
    assert doc.startswith("<!DOCTYPE html>")
    assert ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src &#x27;none&#x27;;"
            in doc)
    assert '<base target="_blank">' in doc and "max-width:100%" in doc
    assert doc.endswith("<body><p>hi</p></body></html>")


# ---- the hostile corpus -----------------------------------------------------------------

@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_hostile_corpus_renders_safely(name: str, raw: bytes) -> None:
    """Each hostile message parses and renders with nothing live and nothing remote."""
    view = parse_message(raw)
    for allow in (False, True):
        if view.html is not None:
            result = sanitize_html(view.html, allow_remote_images=allow, cid_url=cid)
            assert_safe(result.html, allow_remote=allow)
            assert escape(frame_csp(allow)) in frame_document(result.html, frame_csp(allow))
        if view.text is not None:
            assert_safe(text_to_html(view.text), allow_remote=allow)
    shown = [view.subject, *(str(a) for a in [*view.from_, *view.to, *view.cc])]
    if view.calendar:
        shown += [view.calendar.summary, view.calendar.location]
    assert not any(re.search(r"[\x00-\x1f\x7f\u202e]", text) for text in shown)
    for attachment in view.attachments:
        assert not re.search(r"[/\\\x00-\x1f\u202a-\u202e\u2066-\u2069]", attachment.filename)
        assert not attachment.filename.startswith(".")
        assert 0 < len(attachment.filename) <= 120
