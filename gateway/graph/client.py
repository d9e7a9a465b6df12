"""The gateway's one Microsoft Graph client: ``GraphHttp`` (one ``httpx.AsyncClient`` for the
app, made with it in ``create_app``), the member's token sources, and the wire policy every
Graph call follows (the calendar, automatic replies, people search, group overage):

    Authorization  -> the member's bearer token, asked afresh once after a 401
    401            -> one fresh token, then ReauthRequired (the member signs in again)
    403            -> Forbidden          404 -> NotFound          409/412 -> Conflict
    429, 503, 504  -> wait Retry-After (up to ``graph.retry_after_max_seconds``) and retry,
                      else UpstreamUnavailable carrying Retry-After
    400 and others -> CalendarError      network fault/timeout -> UpstreamUnavailable
    a body that is not a JSON object -> UpstreamError

Callers raise what this raises; the web layer decides what the member sees. No token or
content is logged: only Graph's error code and request id.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from gateway.config import Settings
from gateway.errors import (
    CalendarError,
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    ReauthRequired,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.graph.transport import GraphTransport
from gateway.kept import Kept

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PAGES = 50
MAX_RETRIES = 2

# A member's token: called with ``fresh=True`` after Graph refused the last one.
TokenSource = Callable[[bool], Awaitable[str]]


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing. The one client serves every member, so a cookie one
    member's answer set must never ride on another member's request; and Graph's API needs
    none. (httpx offers no switch: its client files every answer's Set-Cookie.)"""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class GraphClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` without a cookie jar (``_NoCookies``)."""

    _none = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, _cookies: Any) -> None:
        pass


@dataclass
class GraphHttp:
    """The app's one Graph client and the retry policy that goes with it."""

    client: httpx.AsyncClient
    timezone: str = "Europe/London"
    retry_after_max: float = 10.0
    page_size: int = 100
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    # Request URLs by (path or next link, query): a calendar page asks for the same few
    # again and again, and httpx parses and quotes a URL afresh each time (a fifth of a
    # Graph call's CPU in the client, 2026-12-07).
    _urls: Kept[httpx.URL] = field(default_factory=lambda: Kept(256), repr=False)

    def url(self, path: str, params: dict[str, str] | None = None) -> httpx.URL:
        """The absolute URL for ``path`` (relative to the base URL, or absolute, as a next
        link is) with ``params``, as httpx would build it."""
        key = (path, tuple(params.items()) if params else ())
        made = self._urls.get(key)
        if made is None:
            made = httpx.URL(path)
            if made.is_relative_url:  # httpx.Client._merge_url
                base = self.client.base_url
                made = base.copy_with(raw_path=base.raw_path + made.raw_path.lstrip(b"/"))
            if params:
                made = made.copy_merge_params(params)
            self._urls.put(key, made)
        return made

    @classmethod
    def from_settings(cls, settings: Settings,
                      transport: httpx.AsyncBaseTransport | None = None) -> GraphHttp:
        ca = settings.graph.ca_file or settings.entra.ca_file
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        tz = settings.general.timezone
        client = GraphClient(
            base_url=settings.graph.base_url.rstrip("/") + "/", verify=verify,
            trust_env=False, transport=transport or GraphTransport(verify),
            timeout=httpx.Timeout(settings.graph.timeout_seconds),
            headers={"Accept": "application/json", "Prefer": f'outlook.timezone="{tz}"'})
        return cls(client, tz, settings.graph.retry_after_max_seconds,
                   settings.graph.page_size)

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def origin(self) -> str:
        u = urlsplit(str(self.client.base_url))
        return f"{u.scheme}://{u.netloc}"


def static_token(token: str) -> TokenSource:
    """A token source for one token that cannot be refreshed (tests, the benchmark)."""
    async def get(fresh: bool) -> str:
        if fresh:
            raise ReauthRequired()
        return token
    return get


def member_token(entra: Any, account_id: str) -> TokenSource:
    """The member's Graph token from msal's silent acquisition (``Entra.graph_token``).

    A source serves one request (``gateway.web.member.graph_token``): the token it got is
    used again for that request's further Graph calls (a calendar view of several pages),
    and asked for afresh only when Graph refused it. Each silent acquisition reads the
    member's encrypted token cache from the store, about a tenth of a calendar page's CPU."""
    known: list[str] = []

    async def get(fresh: bool) -> str:
        if known and not fresh:
            return known[0]
        token: str = await entra.graph_token(account_id, force_refresh=fresh)
        known[:] = [token]
        return token
    return get


def retry_after(resp: httpx.Response) -> int | None:
    """Graph's Retry-After in whole seconds, if it sent one."""
    value = resp.headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() else None


def error_of(resp: httpx.Response) -> GatewayError:
    """The gateway error for a Graph answer that is not a success."""
    try:
        err = resp.json().get("error") or {}
        code, message = str(err.get("code") or ""), str(err.get("message") or "")
        request_id = str((err.get("innerError") or {}).get("request-id") or "")
    except (ValueError, AttributeError):
        code = message = request_id = ""
    log.info("graph answered %s %s (request-id %s)", resp.status_code, code[:60], request_id)
    status = resp.status_code
    retry = retry_after(resp)
    if status == 401:
        return ReauthRequired()
    if status == 403:
        return Forbidden("Exchange does not allow you to do that in this calendar.")
    if status == 404:
        return NotFound("That event is no longer in your calendar. It may have been moved, "
                        "cancelled or deleted.")
    if status in (409, 412):
        return Conflict("The event changed meanwhile. Reload it and try again.")
    if status == 429:
        return UpstreamUnavailable("Exchange is busy and asked the gateway to slow down. "
                                   f"Please try again in {retry or 30} seconds.",
                                   retry_after=retry or 30)
    if status in (502, 503, 504):
        return UpstreamUnavailable("The calendar service is unavailable just now. Please try "
                                   "again shortly.", retry_after=retry)
    if 400 <= status < 500:
        # Graph's messages for refused actions are written for people ("You need to be an
        # organizer to cancel a meeting."); show them, bounded.
        text = message[:200] if message and code.startswith(("Error", "TimeZone")) else ""
        return CalendarError(f"Exchange refused that. {text}".strip())
    return UpstreamError("The calendar service did not answer as expected. Please try again.")


async def send(g: GraphHttp, token: TokenSource, method: str, url: str,
               **kw: Any) -> httpx.Response:
    """One Graph call with the token, retry and error policy; returns a 2xx response."""
    fresh = False
    retries = 0
    waited = 0.0
    target = g.url(url, kw.pop("params", None))
    while True:
        bearer = await token(fresh)
        try:
            resp = await g.client.request(method, target, headers={
                "Authorization": f"Bearer {bearer}"}, **kw)
        except httpx.TimeoutException:
            raise UpstreamUnavailable("The calendar service did not answer in time. Please try "
                                      "again shortly.") from None
        except httpx.TransportError as exc:
            log.warning("graph unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("The calendar service cannot be reached just now. "
                                      "Please try again shortly.") from None
        if resp.is_success:
            return resp
        if resp.status_code == 401 and not fresh:
            fresh = True
            continue
        retry = retry_after(resp)
        if resp.status_code in (429, 503, 504) and retry is not None and \
                retries < MAX_RETRIES and waited + retry <= g.retry_after_max:
            retries += 1
            waited += retry
            await g.sleep(float(retry))
            continue
        raise error_of(resp)


def read_json(resp: httpx.Response) -> dict[str, Any]:
    """The JSON object Graph answered with."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamError("The calendar service sent something the gateway cannot read.")
    return body


async def call(g: GraphHttp, token: TokenSource, method: str, url: str,
               **kw: Any) -> dict[str, Any]:
    """One Graph call (``send``) that answers a JSON object."""
    return read_json(await send(g, token, method, url, **kw))


async def pages(g: GraphHttp, token: TokenSource, url: str,
                params: dict[str, str] | None) -> list[dict[str, Any]]:
    """Every row of a Graph collection, following ``@odata.nextLink`` (up to MAX_PAGES)."""
    return await walk(g, token, url, params, json_page)


def json_page(resp: httpx.Response) -> tuple[list[dict[str, Any]], object]:
    """One page of a Graph collection: its rows and its ``@odata.nextLink`` (or None)."""
    body = read_json(resp)
    value = body.get("value")
    if not isinstance(value, list):
        raise UpstreamError("The calendar service sent a list the gateway cannot read.")
    return [v for v in value if isinstance(v, dict)], body.get("@odata.nextLink")


async def walk(g: GraphHttp, token: TokenSource, url: str, params: dict[str, str] | None,
               read: Callable[[httpx.Response], tuple[list[T], object]]) -> list[T]:
    """Every row of a Graph collection as ``read`` makes rows of each page's response,
    following ``@odata.nextLink`` (up to MAX_PAGES)."""
    rows: list[T] = []
    for _ in range(MAX_PAGES):
        page, next_link = read(await send(g, token, "GET", url, params=params))
        rows.extend(page)
        if not next_link:
            return rows
        # The next link carries all the query; never send the member's token anywhere but
        # Graph's own origin.
        if not isinstance(next_link, str) or not next_link.startswith(g.origin + "/"):
            raise UpstreamError("The calendar service sent a next page the gateway will not "
                                "follow.")
        url, params = next_link, None
    log.warning("calendar view stopped after %d pages", MAX_PAGES)
    return rows


async def member_groups(g: GraphHttp, token: TokenSource) -> list[str]:
    """The signed-in member's group ids (transitive, security groups), for group overage:
    ``POST /me/getMemberObjects`` needs only User.Read for the signed-in user."""
    body = await call(g, token, "POST", "me/getMemberObjects",
                      json={"securityEnabledOnly": True})
    value = body.get("value")
    if not isinstance(value, list):
        raise UpstreamError("Microsoft Graph sent a group list the gateway cannot read.")
    return [str(v) for v in value if isinstance(v, str)]
