"""Sessions, cookies, CSRF, redirects, headers and hostile input at the HTTP edge."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.auth.sessions import SESSION_COOKIE
from gateway.devstack.stack import DevStack
from gateway.web.auth import safe_next
from tests.conftest import Gateway, LoopThread, csrf_of, found, sign_in

PAGES = ["/", "/mail", "/auth/signin", "/auth/signed-out", "/nope", "/livez", "/readyz",
         "/static/app.css"]


def assert_security_headers(r: httpx.Response) -> None:
    h = r.headers
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert h["strict-transport-security"].startswith("max-age=")
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", PAGES)
def test_security_headers_on_every_page_anonymous(gateway: Gateway, path: str) -> None:
    """Every response, errors and static files included, carries the security headers."""
    assert_security_headers(gateway.client().get(path))


def test_security_headers_when_signed_in_and_nonce_changes(gateway: Gateway) -> None:
    """Signed-in pages carry the headers, and the CSP nonce differs per request."""
    client = sign_in(gateway, "member")
    r1, r2 = client.get("/"), client.get("/")
    assert_security_headers(r1)
    n1 = found(re.search(r"nonce-([^']+)'", r1.headers["content-security-policy"])).group(1)
    n2 = found(re.search(r"nonce-([^']+)'", r2.headers["content-security-policy"])).group(1)
    assert n1 != n2


def test_session_cookie_flags(gateway: Gateway) -> None:
    """The session cookie is __Host-, Secure, HttpOnly, SameSite=Lax, Path=/."""
    client = gateway.client()
    from tests.conftest import authorize, post_callback
    r = post_callback(gateway, client, authorize(gateway, client, "member"))
    cookie = next(c for c in r.headers.get_list("set-cookie")
                  if c.startswith(SESSION_COOKIE + "="))
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain=" not in cookie


def test_session_fixation_planted_id_is_not_used(gateway: Gateway) -> None:
    """A session id planted before sign-in is ignored, and sign-in issues a new one."""
    client = gateway.client()
    client.cookies.set(SESSION_COOKIE, "planted-by-attacker", domain="127.0.0.1")
    from tests.conftest import authorize, post_callback
    post_callback(gateway, client, authorize(gateway, client, "member"))
    assert client.cookies.get(SESSION_COOKIE) not in (None, "planted-by-attacker")
    assert client.get("/").status_code == 200


def test_sign_in_replaces_an_existing_session(gateway: Gateway) -> None:
    """Signing in again gives a new id and ends the old session."""
    client = sign_in(gateway, "member")
    old = client.cookies.get(SESSION_COOKIE)
    from tests.conftest import authorize, post_callback
    post_callback(gateway, client, authorize(gateway, client, "member"))
    assert client.cookies.get(SESSION_COOKIE) != old
    assert gateway.loop.run(gateway.app.state.gateway.services.store.get_session(old)) is None


def test_idle_timeout(gateway: Gateway) -> None:
    """A session unused past the idle timeout ends (clock moved, not slept)."""
    client = sign_in(gateway, "member")
    gateway.clock.advance(29 * 60)
    assert client.get("/").status_code == 200
    gateway.clock.advance(31 * 60)
    assert client.get("/mail").status_code == 303


def test_absolute_lifetime(gateway: Gateway) -> None:
    """A session in steady use still ends at the absolute lifetime (12 h by default)."""
    client = sign_in(gateway, "member")
    for _ in range(35):  # 35 x 20 min = 11 h 40: never idle
        gateway.clock.advance(20 * 60)
        assert client.get("/auth/signin").status_code == 303  # signed in: sent on
    gateway.clock.advance(30 * 60)
    assert client.get("/auth/signin").status_code == 200  # the sign-in page again


def test_csrf_missing_or_wrong_token_refused(gateway: Gateway) -> None:
    """Unsafe requests without the session's CSRF token are refused with 403."""
    client = sign_in(gateway, "member")
    origin = {"Origin": gateway.url}
    assert client.post("/auth/signout", headers=origin).status_code == 403
    assert client.post("/auth/signout", data={"csrf_token": "wrong"},
                       headers=origin).status_code == 403
    assert client.get("/").status_code == 200  # still signed in


def test_csrf_cross_origin_refused_even_with_token(gateway: Gateway) -> None:
    """A right token from another Origin is refused."""
    client = sign_in(gateway, "member")
    token = csrf_of(client)
    r = client.post("/auth/signout", data={"csrf_token": token},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = client.post("/auth/signout", data={"csrf_token": token},
                    headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = client.post("/auth/signout", data={"csrf_token": token},
                    headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert client.get("/").status_code == 200


def test_null_origin_same_site_form_post_accepted(gateway: Gateway) -> None:
    """Our no-referrer policy makes browsers send Origin: null; same-origin is accepted."""
    client = sign_in(gateway, "member")
    r = client.post("/auth/signout", data={"csrf_token": csrf_of(client)},
                    headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303


def test_csrf_header_token_accepted(gateway: Gateway) -> None:
    """The token may come in the X-CSRF-Token header (scripted requests)."""
    client = sign_in(gateway, "member")
    r = client.post("/auth/signout", headers={"X-CSRF-Token": csrf_of(client),
                                              "Origin": gateway.url})
    assert r.status_code == 303


@pytest.mark.parametrize("target", [
    "//evil.example/", "https://evil.example/", "/\\evil.example", "\\\\evil.example",
    "/%0d%0aLocation:%20https://evil.example", "javascript:alert(1)", "/\x00x",
    "/auth/start", "http:/evil.example",
])
def test_open_redirect_attempts_land_on_home(target: str) -> None:
    """Anything but a plain same-site path becomes '/'; encoded text stays inert."""
    result = safe_next(target)
    assert result.startswith("/") and not result.startswith(("//", "/\\"))
    assert "\r" not in result and "\n" not in result and ":" not in result.split("/")[1][:6]
    if not target.startswith("/%0d"):
        assert result == "/"


def test_open_redirect_through_the_sign_in_round_trip(gateway: Gateway) -> None:
    """A hostile next= survives the whole sign-in only as '/'."""
    from tests.conftest import authorize, post_callback
    client = gateway.client()
    reply = authorize(gateway, client, "member", next_path="//evil.example/x")
    r = post_callback(gateway, client, reply)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_signin_page_redirects_signed_in_member_safely(gateway: Gateway) -> None:
    """The sign-in page sends an already signed-in member on, never off-site."""
    client = sign_in(gateway, "member")
    r = client.get("/auth/signin", params={"next": "https://evil.example"})
    assert r.status_code == 303 and r.headers["location"] == "/"


def no_trace(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    assert "Traceback" not in r.text and "File \"" not in r.text


@pytest.mark.parametrize("data", [
    {}, {"state": "x"}, {"code": "x"}, {"state": "x" * 20000, "code": "y"},
    {"state": "s", "code": "c", "error": "x"},
])
def test_malformed_callbacks_get_a_4xx_page(gateway: Gateway, data: dict[str, str]) -> None:
    """Malformed callback parameters get a clear 4xx page."""
    r = gateway.client().post("/auth/callback", data=data)
    no_trace(r)
    assert 400 <= r.status_code < 500


def test_callback_with_file_upload_is_refused(gateway: Gateway) -> None:
    """A multipart callback carrying a file is refused, not parsed into the store."""
    r = gateway.client().post("/auth/callback", data={"state": "s"},
                              files={"code": ("x.txt", b"abc")})
    no_trace(r)
    assert r.status_code == 400


def test_oversized_cookie_is_ignored(gateway: Gateway) -> None:
    """A huge cookie header is treated as no session, not an error."""
    client = gateway.client()
    r = client.get("/mail", headers={"Cookie": f"{SESSION_COOKIE}=" + "a" * 7000})
    no_trace(r)
    assert r.status_code == 303


def test_oversized_body_gets_413(gateway: Gateway) -> None:
    """A body over server.max_body_bytes is refused with 413."""
    big = b"x" * (gateway.settings.server.max_body_bytes + 1)
    r = gateway.client().post("/auth/callback", content=big,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    no_trace(r)
    assert r.status_code == 413


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/no/such/page", 404), ("DELETE", "/auth/signin", 405),
    ("PUT", "/livez", 405), ("GET", "/auth/callback", 405), ("GET", "/static/../app.py", 404),
])
def test_unknown_routes_and_wrong_methods(gateway: Gateway, method: str, path: str,
                                          status: int) -> None:
    """Unknown routes and wrong methods get a plain 4xx page."""
    client = sign_in(gateway, "member")
    r = client.request(method, path, headers={"X-CSRF-Token": csrf_of(client),
                                              "Origin": gateway.url})
    no_trace(r)
    assert r.status_code == status


def test_livez_and_readyz(gateway: Gateway) -> None:
    """/livez answers without upstreams; /readyz is 200 while the store answers."""
    c = gateway.client()
    assert c.get("/livez").json() == {"status": "pass"}
    assert c.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_store_is_gone(stack: DevStack, loop_thread: LoopThread,
                                              tmp_path: Path) -> None:
    """/readyz says 503 with a reason when the store stops answering."""
    from tests.conftest import start_gateway
    gw = start_gateway(stack, loop_thread, tmp_path)
    try:
        loop_thread.run(gw.app.state.gateway.services.store.close())
        r = gw.client().get("/readyz")
        assert r.status_code == 503 and r.json()["reason"] == "store not answering"
        assert gw.client().get("/livez").status_code == 200
    finally:
        gw.stop()


def test_csrf_token_on_pages_is_masked_afresh_and_still_accepted(gateway: Gateway) -> None:
    """Each page carries a different masked token (safe to compress); each one works."""
    client = sign_in(gateway, "member")
    t1, t2 = csrf_of(client, "/mail"), csrf_of(client, "/mail")
    assert t1 != t2
    session = gateway.loop.run(gateway.app.state.gateway.services.store.get_session(
        client.cookies.get(SESSION_COOKIE)))
    assert session.csrf_token not in client.get("/mail").text
    r = client.post("/auth/signout", data={"csrf_token": t1}, headers={"Origin": gateway.url})
    assert r.status_code == 303


def test_anonymous_root_is_the_sign_in_page(gateway: Gateway) -> None:
    """The address members are given shows the sign-in page at once (no redirect)."""
    r = gateway.client().get("/")
    assert r.status_code == 200 and 'id="signin"' in r.text


def test_static_files_cached_and_pages_compressed(gateway: Gateway) -> None:
    """Versioned static files are cacheable for a year; pages are gzip'd and never cached."""
    client = sign_in(gateway, "member")
    page = client.get("/mail", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"
    assert page.headers["cache-control"] == "no-store"
    css = found(re.search(r'href="(/static/app\.css\?v=[0-9a-f]+)"', page.text)).group(1)
    r = client.get(css, headers={"Accept-Encoding": "gzip"})
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-encoding"] == "gzip"
