"""The one path table: what each path of the gateway is (public page, static file, health,
key-authenticated API, member page) and what every middleware does with it. The middlewares
read ``rule_for(path)`` instead of keeping their own lists; a test checks that every route of
the app has an entry here.

Entries match a path exactly (``exact=True``) or as a prefix; the longest match wins, so a
specific entry (``/auth/callback``) carries all its own decisions. A path no entry names (a
404 to be) is a member path: it needs a session like any page.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache


class PathKind(Enum):
    PUBLIC = "public"      # anyone, no session needed (sign-in pages, favicon)
    STATIC = "static"      # files under /static: public, no session read, cached long
    HEALTH = "health"      # probes and status for monitors: public
    METRICS = "metrics"    # Prometheus, answered (or not) by MetricsMiddleware itself
    API = "api"            # the ICT API: a bearer API key decides (gateway.web.api)
    MEMBER = "member"      # everything else: a session the access policy admits


@dataclass(frozen=True)
class PathRule:
    prefix: str
    kind: PathKind
    exact: bool = False
    # Unsafe requests here skip the CSRF token: Entra's form_post callback (protected by the
    # flow cookie, state, nonce and PKCE instead).
    csrf_exempt: bool = False
    # A bearer-authenticated call here is no CSRF risk: a cross-site page cannot make a
    # browser send an Authorization header (that needs a CORS preflight we never grant).
    bearer_skips_csrf: bool = False
    # A form posted here with a session that just ended is still taken, to be kept for its
    # member (never acted on) until they sign in again (rule: a message is never lost).
    keep_on_expiry: bool = False
    # gzip: not for attachments (mostly compressed already, and streamed), event streams
    # or metrics.
    compress: bool = True
    # Errors answer JSON (API clients and monitors), not a page.
    json_errors: bool = False
    # A GET without a session is sent to sign-in (pages); otherwise 401.
    sign_in_redirect: bool = True
    # Counted as standby use for the evidence report (gateway.health.history).
    counts_usage: bool = False

    @property
    def public(self) -> bool:
        return self.kind in (PathKind.PUBLIC, PathKind.STATIC, PathKind.HEALTH)

    @property
    def loads_session(self) -> bool:
        return self.kind is not PathKind.STATIC

    @property
    def key_authenticated(self) -> bool:
        return self.kind is PathKind.API

    def matches(self, path: str) -> bool:
        return path == self.prefix if self.exact else path.startswith(self.prefix)


_P, _M = PathKind.PUBLIC, PathKind.MEMBER


def _api(prefix: str, kind: PathKind) -> PathRule:
    return PathRule(prefix, kind, bearer_skips_csrf=True, json_errors=True,
                    sign_in_redirect=False)


TABLE: tuple[PathRule, ...] = (
    PathRule("/auth/callback", _P, exact=True, csrf_exempt=True),
    PathRule("/auth/", _P),
    PathRule("/static/", PathKind.STATIC),
    PathRule("/livez", PathKind.HEALTH),
    PathRule("/readyz", PathKind.HEALTH, json_errors=True),
    PathRule("/health", PathKind.HEALTH, json_errors=True),
    PathRule("/status", PathKind.HEALTH),
    PathRule("/favicon.ico", _P),
    PathRule("/robots.txt", _P),
    PathRule("/metrics", PathKind.METRICS, compress=False),
    _api("/api/failover", PathKind.API),
    _api("/api/audit", PathKind.API),
    _api("/api/", _M),          # no such route: a 401 or 404 in JSON, never a sign-in page
    PathRule("/mail/send", _M, exact=True, keep_on_expiry=True, counts_usage=True),
    PathRule("/mail/part", _M, compress=False, counts_usage=True),
    PathRule("/mail/events", _M, compress=False, counts_usage=True),
    PathRule("/mail", _M, counts_usage=True),
    PathRule("/calendar", _M, counts_usage=True),
    PathRule("/settings/", _M),
    PathRule("/admin", _M),
    PathRule("/", _M, exact=True),
)
# Unnamed paths: 404s, after the session gate like any member page.
DEFAULT = PathRule("", _M)


@lru_cache(maxsize=4096)
def rule_for(path: str) -> PathRule:
    """The rule for ``path``: the longest entry that matches. Decided once per distinct path
    (bounded cache), not once per middleware per request."""
    best = DEFAULT
    for rule in TABLE:
        if rule.matches(path) and len(rule.prefix) > len(best.prefix):
            best = rule
    return best
