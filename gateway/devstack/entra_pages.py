"""The HTML the Entra ID stand-in shows a browser: the account picker, the form_post hand-back,
the error page and the signed-out page. Plus `read_forms` / `read_form_post`, which let a test
without a browser read these pages' forms the way a browser would submit them.

Pages are small inline templates. Every value that reaches a page goes through `html.escape`;
the only script (auto-submitting the form_post hand-back) carries a per-response CSP nonce, and
every page works with JavaScript off. Nothing here knows HTTP: `gateway.devstack.entra` wraps
these strings in responses with their security headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser

from gateway.devstack.users import SampleUser

# Plain, high-contrast and large enough to tap on an iPad; no web fonts, nothing external.
# Narrow screens (a phone at 200 % zoom is under 200 CSS px) get the whole width, and a
# long "Sign in as ..." button or list of scope URLs wraps rather than running out of its box.
_STYLE = """
body{font:17px/1.5 -apple-system,system-ui,"Segoe UI",sans-serif;margin:0;background:#f2f2f2;
color:#1b1b1b}
main{max-width:34rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;
box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:1.5rem;margin:.2rem 0 1rem}
.banner{background:#fff4ce;border-left:4px solid #8a6d00;padding:.5rem .8rem;font-size:.9rem}
.notice{background:#fde7e9;border-left:4px solid #a4262c;padding:.5rem .8rem}
ul.users{list-style:none;padding:0;margin:0}
ul.users li{border-top:1px solid #ccc;padding:.8rem 0}
button,.button{font:inherit;min-height:44px;padding:.5rem 1rem;border:2px solid #0067b8;
background:#0067b8;color:#fff;cursor:pointer;text-decoration:none;display:inline-block;
max-width:100%;overflow-wrap:anywhere}
main p{overflow-wrap:anywhere}
@media (max-width:30rem){main{margin:0;padding:1rem}}
button:focus,.button:focus,a:focus{outline:3px solid #000;outline-offset:2px}
.hinted button{background:#004e8c}
.meta{margin:.3rem 0 0;color:#444;font-size:.95rem;overflow-wrap:anywhere}
.tag{font-weight:600;color:#0b6a0b}
dl{font-size:.85rem;color:#444;overflow-wrap:anywhere}
dt{font-weight:600}
dd{margin:0 0 .4rem}
"""


def _shell(title: str, body: str, nonce: str, *, script: str = "") -> str:
    script_tag = f'<script nonce="{escape(nonce)}">{script}</script>' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title>"
        f'<style nonce="{escape(nonce)}">{_STYLE}</style></head>'
        f"<body><main>{body}</main>{script_tag}</body></html>\n")


def _hidden(fields: Iterable[tuple[str, str]]) -> str:
    return "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                   for k, v in fields)


_BANNER = ('<p class="banner" role="note">Development stand-in for Microsoft Entra ID. '
           "No password is asked for: choose who to be.</p>")


def sign_in_page(*, action: str, params: Sequence[tuple[str, str]],
                 users: Sequence[SampleUser], permissions: Sequence[str], nonce: str,
                 hinted_oid: str | None = None, session_oid: str | None = None,
                 notice: str | None = None) -> str:
    """The account picker: one POST form per sample user, each carrying the original
    authorize parameters as hidden fields plus ``login`` (the user's sign-in name)."""
    items = []
    for u in users:
        tags = []
        if u.oid == session_oid:
            tags.append("Signed in")
        if u.oid == hinted_oid:
            tags.append("Suggested")
        tag_html = "".join(f' <span class="tag">({escape(t)})</span>' for t in tags)
        roles = ", ".join(u.roles) if u.roles else "none"
        groups = f" · Groups: {len(u.groups)}" if u.groups else ""
        desc_id = f"user-{escape(u.key)}-desc"
        autofocus = " autofocus" if u.oid == hinted_oid else ""
        items.append(
            f'<li class="{"hinted" if u.oid == hinted_oid else "user"}">'
            f'<form method="post" action="{escape(action)}">{_hidden(params)}'
            f'<input type="hidden" name="login" value="{escape(u.email)}">'
            f'<button type="submit" id="user-{escape(u.key)}" aria-describedby="{desc_id}"'
            f"{autofocus}>Sign in as {escape(u.name)}</button>{tag_html}"
            f'<p class="meta" id="{desc_id}">{escape(u.email)} · Roles: {escape(roles)}'
            f"{escape(groups)}</p></form></li>")
    notice_html = f'<p class="notice" role="alert">{escape(notice)}</p>' if notice else ""
    perms = ("<p>The application is asking to: " + escape(", ".join(permissions)) + ".</p>"
             if permissions else "")
    body = (f"{_BANNER}<h1>Pick an account</h1>{notice_html}{perms}"
            f'<ul class="users" aria-label="Sample accounts">{"".join(items)}</ul>')
    return _shell("Sign in to your account", body, nonce)


def form_post_page(*, redirect_uri: str, fields: Mapping[str, str], nonce: str) -> str:
    """The response_mode=form_post hand-back: a form that POSTs the authorization response
    to the app. A tiny script submits it at once; the visible button does it with JS off."""
    body = (f'<h1>Signing you in</h1><form method="post" action="{escape(redirect_uri)}" '
            f'id="response">{_hidden(fields.items())}'
            "<p>If nothing happens, select Continue.</p>"
            '<button type="submit">Continue</button></form>')
    return _shell("Working...", body, nonce,
                  script='document.getElementById("response").submit();')


def error_page(*, error: str, description: str, trace_id: str, correlation_id: str,
               timestamp: str, nonce: str) -> str:
    """Entra's own error page: shown when the request cannot be sent back to the app."""
    body = (f"{_BANNER}<h1>Sorry, but we're having trouble signing you in.</h1>"
            f'<p class="notice" role="alert">{escape(description)}</p>'
            "<dl><dt>Error</dt>"
            f"<dd>{escape(error)}</dd><dt>Request Id</dt><dd>{escape(trace_id)}</dd>"
            f"<dt>Correlation Id</dt><dd>{escape(correlation_id)}</dd>"
            f"<dt>Timestamp</dt><dd>{escape(timestamp)}</dd></dl>")
    return _shell("Sign in error", body, nonce)


def signed_out_page(*, return_to: str | None, nonce: str, notice: str | None = None) -> str:
    link = (f'<p><a class="button" href="{escape(return_to)}">Return to the application</a></p>'
            if return_to else "<p>You can close this window.</p>")
    notice_html = f'<p class="notice" role="alert">{escape(notice)}</p>' if notice else ""
    body = (f"{_BANNER}<h1>You signed out of your account</h1>{notice_html}"
            f"<p>It's a good idea to close all browser windows.</p>{link}")
    return _shell("Signed out", body, nonce)


@dataclass
class FormPost:
    """One form of a page, as a browser would submit it."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[FormPost] = []
        self._current: FormPost | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = FormPost(a.get("action", ""), a.get("method", "get").lower())
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and "name" in a:
            self._current.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def read_forms(page: str) -> list[FormPost]:
    """Every form of a page, as a browser would submit it (e.g. the account picker: one form
    per sample user, told apart by their ``login`` field)."""
    reader = _FormReader()
    reader.feed(page)
    reader.close()
    return reader.forms


def read_form_post(page: str) -> FormPost:
    """Read the first form of a page: for the form_post hand-back, action = redirect_uri and
    fields = code/state/session_state/client_info, or error/error_description/state.
    Raises ValueError if the page has no form."""
    forms = read_forms(page)
    if not forms:
        raise ValueError("no form on the page")
    return forms[0]
