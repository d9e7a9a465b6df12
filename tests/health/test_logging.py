"""Structured logs: JSON lines with a request id, and no token, cookie or message content in
them after a sign-in and page views (captured at debug level)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.devstack.stack import DevStack
from gateway.devstack.users import user
from gateway.logging import make_handler
from tests.conftest import Gateway, LoopThread, sign_in


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = make_handler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _bodies(gw: Gateway, who: str) -> list[str]:
    assert gw.stack.mail is not None
    found = []
    for path in sorted(gw.stack.mail.maildir(user(who).email).glob("cur/*"))[:40]:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        try:
            part = msg.get_body(("plain",)) if hasattr(msg, "get_body") else None
            text = part.get_content() if part is not None else ""
        except (LookupError, ValueError, KeyError, AttributeError):
            continue  # the seed's deliberately broken messages
        found += [line.strip() for line in text.splitlines() if len(line.strip()) >= 25][:2]
    return found


def test_logs_are_json_with_request_ids_and_hold_no_secrets(gateway: Gateway,
                                                            captured: io.StringIO) -> None:
    """After a sign-in and page views, every line is JSON with a request id, and no token,
    cookie value or sample message text appears anywhere in the logs."""
    client = sign_in(gateway, "member")
    ids = []
    for path in ("/", "/mail", "/health", "/livez", "/no-such-page"):
        r = client.get(path)
        ids.append(r.headers["x-request-id"])
    svc = gateway.app.state.gateway.services
    account = gateway.loop.run(svc.store.list_sessions())[0].account_id
    secrets = [
        gateway.loop.run(svc.entra.imap_token(account)),
        gateway.loop.run(svc.entra.graph_token(account)),
        *[c for c in client.cookies.values() if len(c) >= 16],
        gateway.settings.entra.client_secret,
    ]
    bodies = _bodies(gateway, "member")
    assert secrets and bodies
    for rid in ids:
        _access(captured, rid)  # every page's access line has been written (waits if not yet)
    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all({"time", "level", "logger", "message", "request_id"} <= set(x)
                         for x in lines)
    access = [x for x in lines if x["logger"] == "gateway.access"]
    assert {x["request_id"] for x in access} >= set(ids)
    for secret in secrets:
        assert secret not in text
        assert secret[-24:] not in text
    for body in bodies:
        assert body not in text


# ---------------------------------------------------------------- request ids, client address
@pytest.fixture
def proxied(stack: DevStack, loop_thread: LoopThread, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway that trusts a proxy on 127.0.0.1 only (as the example environment does)."""
    from tests.conftest import start_gateway

    gw = start_gateway(stack, loop_thread, tmp_path, server__trusted_proxies=["127.0.0.1/32"])
    yield gw
    gw.stop()


def _from(gw: Gateway, source: str) -> httpx.Client:
    """A client whose TCP connections come from ``source`` (127.0.0.x)."""
    from tests.conftest import ca_context

    transport = httpx.HTTPTransport(local_address=source, verify=ca_context(gw.stack))
    c = httpx.Client(base_url=gw.url, transport=transport, trust_env=False, timeout=30)
    gw.clients.append(c)
    return c


def _access(stream: io.StringIO, rid: str) -> dict[str, Any]:
    """The one access line for request ``rid``. The server writes it on its own thread once
    the response has gone, so the client can get the answer before the line exists: wait for
    it (bounded), then require exactly one."""
    import time

    deadline = time.monotonic() + 10
    while True:
        lines: list[dict[str, Any]] = [json.loads(x) for x in stream.getvalue().splitlines()]
        found = [x for x in lines if x["logger"] == "gateway.access" and x["request_id"] == rid]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    [line] = found
    return line


def test_request_id_from_the_trusted_proxy_is_kept_and_its_client_logged(
        proxied: Gateway, captured: io.StringIO) -> None:
    """nginx's id and the member's address (X-Forwarded-For) from the trusted proxy are used:
    the access line carries both."""
    r = _from(proxied, "127.0.0.1").get("/livez", headers={
        "X-Request-ID": "0123456789abcdef0123456789abcdef",
        "X-Forwarded-For": "198.51.100.23"})
    assert r.headers["x-request-id"] == "0123456789abcdef0123456789abcdef"
    line = _access(captured, "0123456789abcdef0123456789abcdef")
    assert line["http"]["client"] == "198.51.100.23"
    assert line["message"].startswith("198.51.100.23 GET /livez 200")


def test_request_id_from_anyone_else_is_replaced_and_their_own_address_logged(
        proxied: Gateway, captured: io.StringIO) -> None:
    """A client that is not the proxy cannot choose its request id, nor its logged address."""
    r = _from(proxied, "127.0.0.2").get("/livez", headers={
        "X-Request-ID": "chosen-by-the-client-1", "X-Forwarded-For": "198.51.100.23"})
    rid = r.headers["x-request-id"]
    assert rid != "chosen-by-the-client-1"
    assert _access(captured, rid)["http"]["client"] == "127.0.0.2"
    assert "chosen-by-the-client-1" not in captured.getvalue()


@pytest.mark.parametrize("bad", ["short", "x" * 65, "id with spaces 123",
                                 "line1\\nFAKE log line", "<script>alert(1)</script>"])
def test_a_malformed_request_id_is_replaced_even_from_the_proxy(
    proxied: Gateway, captured: io.StringIO, bad: str,
) -> None:
    r = _from(proxied, "127.0.0.1").get("/livez", headers={"X-Request-ID": bad})
    assert r.headers["x-request-id"] != bad
    assert len(r.headers["x-request-id"]) == 16


def test_without_trusted_proxies_nothing_forwarded_is_believed(gateway: Gateway,
                                                               captured: io.StringIO) -> None:
    r = gateway.client().get("/livez", headers={"X-Request-ID": "0123456789abcdef",
                                                "X-Forwarded-For": "198.51.100.23"})
    rid = r.headers["x-request-id"]
    assert rid != "0123456789abcdef"
    assert _access(captured, rid)["http"]["client"] == "127.0.0.1"


def test_httpx_does_not_log_request_urls_at_info() -> None:
    """gateway.logging.setup_logging quiets httpx, which logs every request URL at info
    (every probe, every Graph call): a real request leaves no line."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from gateway.logging import setup_logging

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("httpx").level)
    try:
        setup_logging("info", stream)
        url = f"http://127.0.0.1:{server.server_address[1]}/probe?canary=visible-marker"
        assert httpx.get(url, trust_env=False).status_code == 204
        logging.getLogger("gateway.test").info("after the request")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("httpx").setLevel(saved[2])
        server.shutdown()
        server.server_close()
    text = stream.getvalue()
    assert "after the request" in text  # the handler did print info lines
    assert "visible-marker" not in text and "/probe" not in text
