"""What of a message's HTML or text may be shown, and the document it is shown in.

HTML goes through nh3 (ammonia) with an allow-list made for mail; every URL decision is
taken inside the sanitiser by `attribute_filter`, never by rewriting its output (Roundcube
CVE-2024-42009 came from regex rewriting after sanitising). The result is then shown in a
sandboxed iframe whose document carries its own CSP (`frame_document`): defence in depth.

nh3 is superlinear on deep nesting (100,000 nested divs: 32 s) and on thousands of
attributes in one tag, so a linear pre-scan sends such input, and input over the size
limit, to a plain-text rendering instead. Callers run this off the event loop.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import nh3

MAX_HTML_CHARS = 2_000_000
MAX_DEPTH = 800            # 1,000 nested divs clean in ~2 ms; nh3's cost grows past that
MAX_ATTRIBUTES = 256       # per tag; 100,000 attributes in one tag take nh3 ~2 s
MAX_DATA_IMAGE_CHARS = 512_000
MAX_STYLE_CHARS = 8_000

_TABLE = {"width", "height", "align", "valign", "bgcolor", "border", "cellpadding",
          "cellspacing", "colspan", "rowspan", "nowrap", "summary"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "align", "dir", "lang", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": _TABLE, "td": _TABLE, "th": _TABLE, "tr": _TABLE,
    "thead": {"valign", "bgcolor"}, "tbody": {"valign", "bgcolor"}, "tfoot": {"valign", "bgcolor"},
    "col": {"span", "width"}, "colgroup": {"span", "width"},
    "ol": {"start", "type"}, "ul": {"type"}, "li": {"value", "type"},
    "hr": {"width", "size", "noshade", "color"},
}
TAGS = {"a", "abbr", "address", "article", "b", "bdi", "big", "blockquote", "br", "caption",
        "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "div", "dl", "dt",
        "em", "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s",
        "section", "small", "span", "strike", "strong", "sub", "summary", "sup", "table",
        "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "wbr"}
# Removed with everything inside: scripts, styles (we cannot vet CSS rules), and the
# foreign-content and raw-text elements behind most mXSS tricks.
CLEAN_CONTENT = {"script", "style", "title", "template", "noscript", "svg", "math", "object",
                 "embed", "iframe", "frame", "frameset", "applet", "noembed", "noframes",
                 "xmp", "plaintext", "textarea", "select", "head"}
STYLE_PROPERTIES = frozenset(
    "color background-color font font-family font-size font-style font-variant font-weight "
    "line-height letter-spacing word-spacing text-align text-decoration text-indent "
    "text-transform white-space vertical-align direction width height min-width max-width "
    "min-height max-height margin margin-top margin-right margin-bottom margin-left padding "
    "padding-top padding-right padding-bottom padding-left border border-top border-right "
    "border-bottom border-left border-color border-style border-width border-collapse "
    "border-spacing border-radius display float clear list-style-type table-layout "
    "word-wrap word-break overflow-wrap".split())
_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc"})
_CSS_FORBIDDEN = re.compile(r"\\|/\*|url|expression|image|@|<|>|[{}]|var\(|attr\(|env\(|"
                            r"javascript|behavio|binding", re.IGNORECASE)
_CSS_CALL = re.compile(r"(?<![\w-])([\w-]*+)\s*+\(")   # linear: starts only at a word's start
_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*",
                         re.IGNORECASE)
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]")
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")


@dataclass(frozen=True, slots=True)
class SanitizedHtml:
    html: str
    blocked_remote: int      # remote images / backgrounds removed
    had_remote: bool         # the message asked for remote content at all
    simplified: bool = False  # too large or too complex: shown as text instead


def sanitize_html(html: str, *, allow_remote_images: bool,
                  cid_url: Callable[[str], str | None],
                  max_chars: int = MAX_HTML_CHARS) -> SanitizedHtml:
    """Sanitise a message's HTML for the sandboxed frame."""
    if len(html) > max_chars or not _manageable(html):
        return SanitizedHtml(text_to_html(html_to_text(html[:max_chars])), 0, False, True)
    state = {"blocked": 0, "remote": 0}

    def remote(kept: bool) -> None:
        state["remote"] += 1
        state["blocked"] += not kept

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr == "style":
            return _filter_style(value, remote)
        if tag == "img" and attr == "src":
            return _filter_img(value, allow_remote_images, cid_url, remote)
        if tag == "a" and attr == "href":
            return value if _URL_NOISE.sub("", value).lower().startswith(_LINK_SCHEMES) else None
        return value

    cleaned = nh3.clean(
        html, tags=TAGS, clean_content_tags=CLEAN_CONTENT, attributes=ATTRIBUTES,
        attribute_filter=attribute_filter, strip_comments=True, link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        # cid and data reach attribute_filter, which decides; everything else never does.
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        filter_style_properties=set(STYLE_PROPERTIES))
    return SanitizedHtml(cleaned, state["blocked"], state["remote"] > 0)


def _filter_img(value: str, allow_remote: bool, cid_url: Callable[[str], str | None],
                remote: Callable[[bool], None]) -> str | None:
    url = _URL_NOISE.sub("", value)
    low = url.lower()
    if low.startswith("cid:"):
        return cid_url(unquote(url[4:]).strip("<>"))
    if low.startswith("data:"):
        ok = len(value) <= MAX_DATA_IMAGE_CHARS and _DATA_IMAGE.fullmatch(value.strip())
        return value.strip() if ok else None
    if low.startswith(("https:", "http:", "//")):
        keep = allow_remote and low.startswith("https:")
        remote(keep)
        return value.strip() if keep else None
    return None   # relative URLs would point at the gateway itself


def _filter_style(value: str, remote: Callable[[bool], None]) -> str | None:
    if len(value) > MAX_STYLE_CHARS:
        return None
    kept = []
    for declaration in value.split(";"):
        prop, colon, val = declaration.partition(":")
        prop = prop.strip().lower()
        if re.search(r"url\s*\(|image-set", val, re.IGNORECASE) and re.search(
                r"https?:|//", val, re.IGNORECASE):
            remote(False)   # CSS images are never fetched, even when images are allowed
        if (not colon or prop not in STYLE_PROPERTIES or val.count('"') % 2
                or val.count("'") % 2 or _CSS_FORBIDDEN.search(val)
                or any(f.lower() not in _CSS_FUNCTIONS
                       for f in _CSS_CALL.findall(val))):
            continue
        kept.append(f"{prop}:{val.strip()}")
    return ";".join(kept) or None


# ---- a linear scan for pre-checks and plain-text rendering -------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr", "keygen", "frame", "basefont", "isindex"}
_BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table",
          "blockquote", "pre", "hr", "ul", "ol", "dl", "dt", "dd", "section", "article",
          "header", "footer", "center", "address"}
_SKIP_CONTENT = {"script", "style", "title", "template", "head", "noscript", "svg", "math"}
_TAG_NAME = re.compile(r"/?([A-Za-z][^\s/>]*)")


def _scan(html: str) -> Iterator[tuple[bool, str]]:
    """(is_tag, text) pieces in one pass: a tag is '<' + letter, '/', '!' or '?' up to the
    next '>'. Not an HTML parser; it never looks back, so it is linear on any input."""
    pos, end = 0, len(html)
    while pos < end:
        lt = html.find("<", pos)
        if lt < 0:
            yield False, html[pos:]
            return
        if lt > pos:
            yield False, html[pos:lt]
        nxt = html[lt + 1:lt + 2]
        if not (nxt.isalpha() or nxt in ("/", "!", "?")):
            yield False, "<"
            pos = lt + 1
            continue
        close = "-->" if html.startswith("<!--", lt) else ">"
        gt = html.find(close, lt + 1)
        if gt < 0:
            return
        yield True, html[lt + 1:gt]
        pos = gt + len(close)


def _manageable(html: str) -> bool:
    depth = deepest = 0
    for is_tag, text in _scan(html):
        if not is_tag:
            continue
        match = _TAG_NAME.match(text)
        if match is None:
            continue
        if text.startswith("/"):
            depth = max(0, depth - 1)
        elif match.group(1).lower() not in _VOID:
            depth += 1
            deepest = max(deepest, depth)
        if deepest > MAX_DEPTH or text.count("=") > MAX_ATTRIBUTES \
                or len(text.split()) > MAX_ATTRIBUTES:
            return False
    return True


def html_to_text(html: str) -> str:
    """Readable text of an HTML body (for quoting in replies and for the fallback view)."""
    out: list[str] = []
    skip_until: str | None = None
    for is_tag, text in _scan(html):
        match = _TAG_NAME.match(text) if is_tag else None
        name = match.group(1).lower() if match else ""
        if skip_until is not None:
            if is_tag and text.startswith("/") and name == skip_until:
                skip_until = None
            continue
        if not is_tag:
            out.append(re.sub(r"\s+", " ", htmllib.unescape(text)))
        elif name in _SKIP_CONTENT and not text.startswith("/") and not text.endswith("/"):
            skip_until = name
        elif name in _BLOCK:
            out.append("\n")
    lines = (" ".join(line.split()) for line in "".join(out).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# ---- plain text to HTML, and the framed document ------------------------------------------

_LINKABLE = re.compile(
    r"(?P<url>https?://[^\s<>\"'\x00-\x1f\x7f]++)"
    r"|(?<![\w.!#$%&'*+/=?^`{|}~-])(?P<email>[\w.!#$%&'*+/=?^`{|}~-]++@[A-Za-z0-9-]++"
    r"(?:\.[A-Za-z0-9-]++)+)", re.ASCII)
_TRAILING = ".,;:!?'\")]}"


def text_to_html(text: str) -> str:
    """Escape plain text, keep its line breaks, and make web and mail addresses links.
    The output is built from escaped pieces; nothing is matched inside escaped HTML."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text.replace("\r\n", "\n"))
    out: list[str] = []
    pos = 0
    for match in _LINKABLE.finditer(text):
        target = match.group()
        if match.group("url"):
            while target and target[-1] in _TRAILING and not (
                    target[-1] == ")" and target.count("(") >= target.count(")")):
                target = target[:-1]
            href = target
        else:
            href = "mailto:" + target
        out.append(_escape_text(text[pos:match.start()]))
        out.append(f'<a href="{htmllib.escape(href)}" rel="noopener noreferrer" '
                   f'target="_blank">{htmllib.escape(target)}</a>')
        pos = match.start() + len(target)
    out.append(_escape_text(text[pos:]))
    return "".join(out)


def _escape_text(text: str) -> str:
    return htmllib.escape(text).replace("\n", "<br>\n")


def frame_csp(allow_remote_images: bool) -> str:
    """The policy of the framed message document: nothing runs, only allowed images load."""
    images = "'self' data: https:" if allow_remote_images else "'self' data:"
    return (f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
            "font-src 'none'; form-action 'none'; base-uri 'none'")


_FRAME_STYLE = (
    "html{-webkit-text-size-adjust:100%}"
    "body{margin:0;padding:12px;font:16px/1.45 -apple-system,system-ui,sans-serif;"
    "color:#1b1b1b;background:#fff;overflow-wrap:anywhere;word-wrap:break-word}"
    "img,table{max-width:100%}img{height:auto}pre{white-space:pre-wrap}"
    "blockquote{margin:0 0 0 .5em;padding-left:.6em;border-left:3px solid #c8c8c8}"
    "a{color:#0b57d0}")


def frame_document(body_html: str, nonce_free_csp: str) -> str:
    """The whole document for the sandboxed iframe (srcdoc, or served at its own URL)."""
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" "
            f"content=\"{htmllib.escape(nonce_free_csp)}\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<base target=\"_blank\"><style>{_FRAME_STYLE}</style></head>"
            f"<body>{body_html}</body></html>")
