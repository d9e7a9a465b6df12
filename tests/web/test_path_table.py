"""The one path table (gateway.web.middleware.paths): every route of the app is named in it,
and the per-path decisions the middlewares read are the ones the security rules need."""

import re
from pathlib import Path

from starlette.routing import Mount, Route

from gateway.app import create_app
from gateway.config import load_settings
from gateway.web.middleware.paths import DEFAULT, TABLE, PathKind, rule_for


def _sample(path: str) -> str:
    """A concrete path for a route template (``/calendar/event/{ref}`` -> ``.../x``)."""
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_of_the_app_has_an_entry(tmp_path: Path) -> None:
    app = create_app(load_settings(environ={
        "GATEWAY_STORE_SQLITE_PATH": str(tmp_path / "g.db")}))
    paths = []
    for route in app.routes:
        if isinstance(route, Mount):
            paths.append(route.path + "/x")
        else:
            assert isinstance(route, Route)
            paths.append(_sample(route.path))
    assert len(paths) > 40
    unnamed = [p for p in paths if rule_for(p) is DEFAULT]
    assert unnamed == [], f"routes missing from the path table: {unnamed}"


def test_entries_are_unique_and_longest_match_wins() -> None:
    keys = [(r.prefix, r.exact) for r in TABLE]
    assert len(keys) == len(set(keys))
    assert rule_for("/auth/callback").csrf_exempt
    assert not rule_for("/auth/callback/more").csrf_exempt
    assert rule_for("/auth/start").public and not rule_for("/auth/start").csrf_exempt
    assert rule_for("/mail/send").keep_on_expiry and not rule_for("/mail/sendx").keep_on_expiry
    assert rule_for("/nowhere") is DEFAULT and not DEFAULT.public


def test_the_decisions_the_middlewares_read() -> None:
    public = ["/auth/start", "/static/app.css", "/livez", "/readyz", "/health", "/status",
              "/favicon.ico", "/robots.txt"]
    assert all(rule_for(p).public for p in public)
    member = ["/", "/mail", "/mail/read", "/calendar", "/admin", "/settings/replies",
              "/metrics", "/api/other"]
    assert not any(rule_for(p).public for p in member)
    assert rule_for("/static/app.css").kind is PathKind.STATIC
    assert not rule_for("/static/app.css").loads_session and rule_for("/").loads_session
    assert [p for p in ["/mail/part", "/mail/events", "/metrics", "/mail/read", "/"]
            if not rule_for(p).compress] == ["/mail/part", "/mail/events", "/metrics"]
    assert all(rule_for(p).key_authenticated for p in ["/api/failover", "/api/audit/verify"])
    assert not rule_for("/api/other").key_authenticated
    assert all(rule_for(p).bearer_skips_csrf and not rule_for(p).sign_in_redirect
               for p in ["/api/failover", "/api/audit", "/api/other"])
    assert not rule_for("/mail/send").bearer_skips_csrf
    assert [p for p in ["/api/audit", "/health", "/readyz", "/livez", "/mail"]
            if rule_for(p).json_errors] == ["/api/audit", "/health", "/readyz"]
    assert [p for p in ["/mail", "/mail/send", "/mail/part", "/calendar/week", "/admin", "/"]
            if rule_for(p).counts_usage] == ["/mail", "/mail/send", "/mail/part",
                                             "/calendar/week"]
