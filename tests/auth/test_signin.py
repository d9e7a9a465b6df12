"""Sign-in end to end: the gateway's real msal client against the Entra stand-in over TLS,
then the proof page reading the INBOX count through Dovecot with the member's own token."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioimaplib

from gateway.auth.sessions import FLOW_COOKIE, SESSION_COOKIE
from gateway.devstack.entra import EntraStandIn
from gateway.devstack.stack import DevStack
from gateway.devstack.tokens import OUTLOOK_AUDIENCE
from gateway.devstack.users import user
from tests.conftest import Gateway, LoopThread, authorize, csrf_of, post_callback, sign_in


def imap_count(gw: Gateway, who: str) -> int:
    """INBOX count read straight from Dovecot, bypassing the gateway."""
    u = user(who)
    assert gw.stack.entra is not None and gw.stack.mail is not None
    token = gw.stack.entra.issue_access_token(u, OUTLOOK_AUDIENCE, ["IMAP.AccessAsUser.All"])

    async def count() -> int:
        ctx = ssl.create_default_context(cafile=str(gw.stack.certs.ca_cert))
        c = aioimaplib.IMAP4_SSL(gw.stack.mail.host, gw.stack.mail.imap_port, ssl_context=ctx)
        await c.wait_hello_from_server()
        assert (await c.xoauth2(u.email, token)).result == "OK"
        resp = await c.examine("INBOX")
        await c.logout()
        return next(int(line.split()[0]) for line in resp.lines
                    if isinstance(line, bytes) and line.endswith(b"EXISTS"))
    return gw.loop.run(count())


def proof_count(html: str) -> int:
    m = re.search(r'id="folder-count" class="muted"><strong>(\d+)</strong>', html)
    assert m, html
    return int(m.group(1))


def test_member_signs_in_and_sees_name_and_inbox_count(gateway: Gateway) -> None:
    """A member signs in through msal and the stand-in, and sees their INBOX count."""
    client = sign_in(gateway, "member")
    page = client.get("/")
    assert page.status_code == 200
    assert "Cllr Alex Morgan" in page.text
    assert proof_count(page.text) == imap_count(gateway, "member") > 0


def test_each_member_sees_only_their_own_mailbox(gateway: Gateway) -> None:
    """Two members' sessions each show their own name and their own count."""
    gateway.stack.mail.deliver(user("member2").email,
                               b"From: a@b.example\r\nSubject: only for Jo\r\n\r\nhi\r\n")
    a, b = sign_in(gateway, "member"), sign_in(gateway, "member2")
    pa, pb = a.get("/").text, b.get("/").text
    assert '<span class="who">Cllr Alex Morgan</span>' in pa
    assert '<span class="who">Cllr Jo Evans</span>' in pb
    assert "only for Jo" in pb and "only for Jo" not in pa
    assert proof_count(pa) == imap_count(gateway, "member")
    assert proof_count(pb) == imap_count(gateway, "member2")


def test_return_to_the_page_first_asked_for(gateway: Gateway) -> None:
    """An anonymous visit goes to sign-in and, after it, back to the page asked for."""
    client = gateway.client()
    r = client.get("/?folder=INBOX")
    assert r.status_code == 303
    nxt = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
    assert nxt == "/?folder=INBOX"
    reply = authorize(gateway, client, "member", next_path=nxt)
    r = post_callback(gateway, client, reply)
    assert r.status_code == 303 and r.headers["location"] == "/?folder=INBOX"


def test_wrong_state_is_refused(gateway: Gateway) -> None:
    """A callback whose state does not match the flow is refused with a clear page."""
    client = gateway.client()
    reply = authorize(gateway, client, "member")
    reply.fields["state"] = "not-the-state"
    r = post_callback(gateway, client, reply)
    assert r.status_code == 400
    assert "out of date or had been altered" in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_callback_without_flow_cookie_is_refused(gateway: Gateway) -> None:
    """A callback from another browser (no flow cookie) cannot complete a sign-in."""
    reply = authorize(gateway, gateway.client(), "member")
    r = post_callback(gateway, gateway.client(), reply)
    assert r.status_code == 400 and "expired or was already used" in r.text


def test_replayed_code_is_refused(gateway: Gateway) -> None:
    """An authorization code redeemed once cannot be redeemed again."""
    client = gateway.client()
    first = authorize(gateway, client, "member")
    assert post_callback(gateway, client, first).status_code == 303
    attacker = gateway.client()
    second = authorize(gateway, attacker, "member")
    second.fields["code"] = first.fields["code"]
    r = post_callback(gateway, attacker, second)
    assert r.status_code == 400
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_nonce_mismatch_is_refused(gateway: Gateway) -> None:
    """An id_token whose nonce is not the one sent is refused (msal's nonce check)."""
    entra = gateway.stack.entra
    client = gateway.client()
    entra.tamper_next_nonce()
    reply = authorize(gateway, client, "member")
    r = post_callback(gateway, client, reply)
    assert r.status_code == 400
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_consent_denied_gives_a_plain_message(gateway: Gateway) -> None:
    """A member who declines consent gets a plain explanation, no session."""
    u = user("member2")
    gateway.stack.entra.deny_consent(u.oid)
    try:
        client = gateway.client()
        reply = authorize(gateway, client, "member2")
        r = post_callback(gateway, client, reply)
    finally:
        gateway.stack.entra.deny_consent(None)
    # User consent is off in councils: consent_required means the registration lacks a
    # permission, which only ICT can fix; the page says so and ICT has been told.
    assert r.status_code == 503
    assert "permission" in r.text and "ICT has been told" in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_user_without_role_is_refused(gateway: Gateway) -> None:
    """Someone with no gateway role or group is refused and gets no session."""
    client = gateway.client()
    r = post_callback(gateway, client, authorize(gateway, client, "norole"))
    assert r.status_code == 403
    assert "not set up to use the mail gateway" in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert client.get("/mail").status_code == 303


def test_group_membership_admits_when_configured(stack: DevStack, loop_thread: LoopThread,
                                                 tmp_path: Path) -> None:
    """A group id from settings admits a user with no app role."""
    from tests.conftest import start_gateway
    norole = user("norole")
    stack.entra.set_groups(norole.oid, ["aaaaaaaa-0000-4000-8000-000000000001"])
    gw = start_gateway(stack, loop_thread, tmp_path,
                       access__member_groups=["aaaaaaaa-0000-4000-8000-000000000001"])
    try:
        client = sign_in(gw, "norole")
        assert client.get("/").status_code == 200
    finally:
        stack.entra.set_groups(norole.oid, None)
        gw.stop()


def test_revoked_refresh_token_leads_back_to_sign_in(gateway: Gateway,
                                                     short_tokens: EntraStandIn) -> None:
    """When the refresh token is revoked, the member is sent to sign-in, then back."""
    client = sign_in(gateway, "member2")
    assert client.get("/").status_code == 200
    short_tokens.revoke_refresh_tokens(user("member2").oid)
    # The open IMAP connection ends (idle cut, server restart): a new one needs a token.
    gateway.loop.run(gateway.app.state.gateway.services.imap_pool.close_all())
    r = client.get("/?x=1")
    assert r.status_code == 303
    assert r.headers["location"] == "/auth/signin?next=%2F%3Fx%3D1"
    assert client.get("/mail").status_code == 303  # the session is gone
    short_tokens.unrevoke_refresh_tokens(user("member2").oid)


def test_expired_refresh_token_leads_back_to_sign_in(gateway: Gateway,
                                                     short_tokens: EntraStandIn) -> None:
    """When the refresh token has expired, the member is sent to sign-in."""
    client = sign_in(gateway, "member")
    short_tokens.expire_refresh_tokens()
    # Sign-in warms the member's IMAP connection in the background (ImapPool.warm). When
    # that warm-up took its token before the expiry above, its open connection serves the
    # page without a token, and the page rightly answers 200. End it (and any warm-up still
    # running), as an idle cut would, so the page needs a new connection and so a token.
    gateway.loop.run(gateway.app.state.gateway.services.imap_pool.close_all())
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/signin")


def test_sign_out_ends_session_token_cache_and_entra_session(gateway: Gateway) -> None:
    """Sign-out deletes the session and token cache and goes to Entra's end-session URL."""
    client = sign_in(gateway, "member")
    svc = gateway.app.state.gateway.services
    session_id = client.cookies.get(SESSION_COOKIE)
    account = gateway.loop.run(svc.store.get_session(session_id)).account_id
    assert gateway.loop.run(svc.store.get_token_cache(account)) is not None
    r = client.post("/auth/signout", data={"csrf_token": csrf_of(client)},
                    headers={"Origin": gateway.url})
    assert r.status_code == 303
    loc = urlsplit(r.headers["location"])
    assert loc.path.endswith("/oauth2/v2.0/logout")
    assert parse_qs(loc.query)["post_logout_redirect_uri"] == [gateway.url + "/auth/signed-out"]
    assert gateway.loop.run(svc.store.get_session(session_id)) is None
    assert gateway.loop.run(svc.store.get_token_cache(account)) is None
    assert client.get("/mail").status_code == 303


def test_token_cache_is_encrypted_at_rest(gateway: Gateway) -> None:
    """The stored token cache holds no token in the clear and decrypts with the ring."""
    client = sign_in(gateway, "member")
    svc = gateway.app.state.gateway.services
    session = gateway.loop.run(svc.store.get_session(client.cookies.get(SESSION_COOKIE)))
    blob = gateway.loop.run(svc.store.get_token_cache(session.account_id))
    assert b"eyJ" not in blob and b"refresh_token" not in blob.lower()
    plain = svc.keyring.decrypt(blob, b"token-cache:" + session.account_id.encode())
    assert b"RefreshToken" in plain


def test_flow_cookie_allows_the_cross_site_form_post(gateway: Gateway) -> None:
    """The flow cookie is SameSite=None (Entra posts back cross-site), Secure, HttpOnly."""
    client = gateway.client()
    r = client.get("/auth/start", params={"next": "/"})
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(FLOW_COOKIE + "=")
    for flag in ("Secure", "HttpOnly", "SameSite=None", "Path=/"):
        assert flag in cookie


def test_entra_down_gives_a_clear_page(gateway: Gateway) -> None:
    """If Entra ID answers errors, starting sign-in shows a plain 503 page."""
    entra = gateway.stack.entra
    # A fresh gateway has not cached discovery; the stand-in answers 503 to everything.
    entra.set_fault("error")
    try:
        r = gateway.client().get("/auth/start")
    finally:
        entra.set_fault(None)
    assert r.status_code == 503
    assert "Traceback" not in r.text and "sign-in service" in r.text


def test_forged_token_is_refused_by_dovecot_quickly(gateway: Gateway) -> None:
    """The gateway's IMAP adapter turns a refused token into ReauthRequired, promptly."""
    from gateway.errors import ReauthRequired
    from gateway.mail import imap_login

    svc = gateway.app.state.gateway.services

    async def try_login() -> str:
        try:
            async with imap_login.connect(svc.imap, user("member").email, "not-a-token"):
                return "logged in"
        except ReauthRequired:
            return "refused"
    result = gateway.loop.run(asyncio.wait_for(try_login(), 10))
    assert result == "refused"


def test_token_cache_still_decrypts_after_key_rotation(stack: DevStack, loop_thread: LoopThread,
                                                       tmp_path: Path) -> None:
    """With a new key put first and the old one kept, a member's stored tokens still work;
    once the old key is dropped they are unreadable and the member signs in again."""
    from gateway.crypto import new_key
    from tests.conftest import start_gateway

    old, new = new_key(), new_key()
    gw1 = start_gateway(stack, loop_thread, tmp_path, crypto__keys=[old])
    client = sign_in(gw1, "member")
    assert client.get("/").status_code == 200
    session_id = client.cookies.get(SESSION_COOKIE)
    assert session_id
    gw1.stop()

    gw2 = start_gateway(stack, loop_thread, tmp_path, crypto__keys=[new, old])
    try:
        c2 = gw2.client()
        c2.cookies.set(SESSION_COOKIE, session_id, domain="127.0.0.1")
        assert c2.get("/").status_code == 200  # a new IMAP login: token from the old blob
    finally:
        gw2.stop()

    gw3 = start_gateway(stack, loop_thread, tmp_path, crypto__keys=[new])
    try:
        c3 = gw3.client()
        c3.cookies.set(SESSION_COOKIE, session_id, domain="127.0.0.1")
        r = c3.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/auth/signin")
    finally:
        gw3.stop()


def test_fresh_sign_in_asks_entra_for_credentials_again(gateway: Gateway) -> None:
    """The admin page's 'sign in again' asks Entra for prompt=login, so a recent sign-in
    really is recent and not Entra's silent single sign-on."""
    r = gateway.client().get("/auth/start", params={"fresh": "1", "next": "/admin"})
    assert r.status_code == 303
    assert parse_qs(urlsplit(r.headers["location"]).query)["prompt"] == ["login"]
    plain = gateway.client().get("/auth/start", params={"next": "/admin"})
    assert "prompt" not in parse_qs(urlsplit(plain.headers["location"]).query)


# ------------------------------------------------- faults ICT must fix, transient, step-up


def _entra_control(gw: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    """Flip the Entra stand-in's switches through its real HTTPS control endpoint."""
    import httpx

    from tests.conftest import ca_context
    entra = gw.stack.entra
    with httpx.Client(verify=ca_context(gw.stack), trust_env=False) as c:
        r = c.post(entra.base_url + "/_devstack/control", json=body,
                   headers={"Authorization": f"Bearer {entra.admin_key}"})
    assert r.status_code == 200, r.text
    state: dict[str, Any] = r.json()
    return state


def test_consent_missing_is_named_audited_counted_and_in_health(gateway: Gateway) -> None:
    """AADSTS65001 at sign-in: a page saying ICT has been told, an audit row, a metric and a
    /health warning naming the fault and its fix."""
    u = user("member2")
    _entra_control(gateway, {"deny_consent": u.oid})
    try:
        client = gateway.client()
        r = post_callback(gateway, client, authorize(gateway, client, "member2"))
    finally:
        _entra_control(gateway, {"deny_consent": None})
    assert r.status_code == 503 and "ICT has been told" in r.text
    assert "Traceback" not in r.text
    rows = gateway.loop.run(gateway.app.state.gateway.services.store.audit_rows())
    assert any('"ict.fault"' in row.body and "consent_missing" in row.body for row in rows)
    admin = sign_in(gateway, "admin")
    metrics = admin.get("/metrics")
    assert metrics.status_code == 200
    counted = re.search(r'gateway_ict_faults_total\{kind="consent_missing"\} (\d+\.\d+)',
                        metrics.text)
    assert counted and float(counted.group(1)) >= 1, metrics.text[-500:]
    health = gateway.running().health.document(version="t", release_id="t",
                                              service_id="t")[0]
    check = health["checks"]["tenant:faults"][0]
    assert check["status"] == "warn" and "consent_missing" in check["output"]
    assert "AADSTS65001" in check["output"]


def test_passing_entra_error_keeps_the_session_and_says_try_again(
        gateway: Gateway, short_tokens: EntraStandIn) -> None:
    """A 500 or temporarily_unavailable while refreshing (every page refreshes its token):
    503 with Retry-After and "try again in a minute", the session stays, and the next try
    works."""
    try:
        client = sign_in(gateway, "member")
        assert client.get("/calendar").status_code == 200
        for kind in ("server_error", "temporarily_unavailable"):
            _entra_control(gateway, {"token_fault": {"kind": kind, "count": 1}})
            r = client.get("/calendar")
            assert r.status_code == 503, (kind, r.status_code)
            assert r.headers["retry-after"] == "60"
            assert "try again in a minute" in r.text and "still signed in" in r.text
            assert client.get("/calendar").status_code == 200   # same session, recovered
    finally:
        short_tokens.fail_token_requests(None)


def test_claims_challenge_sends_member_through_sign_in_and_back(gateway: Gateway) -> None:
    """The step-up user's calendar: interaction_required with claims -> /auth/start with the
    claims sealed -> Entra with claims= -> back on the calendar, which now works."""
    import httpx

    from tests.conftest import ca_context, form_action, form_fields
    client = sign_in(gateway, "stepup")
    r = client.get("/calendar")
    assert r.status_code == 303
    start = r.headers["location"]
    assert start.startswith("/auth/start?") and "claims=" in start
    assert "capolids" not in start                      # sealed, not readable
    tampered = client.get(start[:-3] + "AAA")
    assert tampered.status_code == 400
    to_entra = client.get(start)
    assert to_entra.status_code == 303
    location = to_entra.headers["location"]
    assert "claims=" in location and "capolids" in httpx.URL(location).params["claims"]
    with httpx.Client(verify=ca_context(gateway.stack), trust_env=False) as browser:
        page = browser.get(location + "&dev_auto=1&login_hint=" + user("stepup").email)
    back = post_callback(gateway, client, type("R", (), {
        "action": form_action(page.text), "fields": form_fields(page.text)})())
    assert back.status_code == 303 and back.headers["location"] == "/calendar"
    assert client.get("/calendar").status_code == 200


def test_group_overage_resolves_groups_through_graph(stack: DevStack, loop_thread: LoopThread,
                                                     tmp_path: Path) -> None:
    """The member in 251 groups gets no groups claim; the gateway reads them from Graph, so
    a pilot that admits only the pilot group still admits them."""
    from gateway.devstack.users import PILOT_GROUP
    from tests.conftest import start_gateway
    gw = start_gateway(stack, loop_thread, tmp_path, failover__initial_mode="standby",
                       failover__pilot_groups=[PILOT_GROUP])
    try:
        client = sign_in(gw, "overage")
        r = client.get("/")
        assert r.status_code == 200 and "Cllr Chris Owen" in r.text
        sessions = loop_thread.run(gw.app.state.gateway.services.store.list_sessions())
        mine = next(s for s in sessions if s.email == user("overage").email)
        assert PILOT_GROUP in mine.groups and len(mine.groups) == 251
    finally:
        for c in gw.clients:
            c.close()
        gw.stop()


def test_passing_entra_error_during_sign_in_says_try_again(gateway: Gateway) -> None:
    """Entra's 500 while redeeming the code: a plain 503 with Retry-After, no session and no
    loop; the next sign-in works."""
    client = gateway.client()
    reply = authorize(gateway, client, "member")
    _entra_control(gateway, {"token_fault": {"kind": "server_error", "count": 1}})
    r = post_callback(gateway, client, reply)
    assert r.status_code == 503 and r.headers["retry-after"] == "60"
    assert "try again in a minute" in r.text and "Traceback" not in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert sign_in(gateway, "member").get("/").status_code == 200
