"""One IMAP connection per member against Exchange's personality (the proxy in
gateway.devstack.exchange_imap, which counts logins): pages and the new-mail stream share
it, an expired token or an IDLE the server ends is resumed without the member seeing it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.devstack.stack import DevStack
from gateway.devstack.users import user
from tests.conftest import Gateway, LoopThread, sign_in, start_gateway
from tests.web.mailhelp import message, unique


@pytest.fixture(scope="module")
def proxy_stack(loop_thread: LoopThread,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    s = DevStack(tmp_path_factory.mktemp("exconn"), exchange_capabilities=True,
                 exchange_proxy=True, seed_messages=5)
    loop_thread.run(s.start())
    yield s
    loop_thread.run(s.stop())


@pytest.fixture
def gw(proxy_stack: DevStack, loop_thread: LoopThread, tmp_path: Any) -> Iterator[Gateway]:
    assert proxy_stack.mail is not None and proxy_stack.entra is not None
    proxy_stack.mail.set_idle_timeout(30 * 60.0)
    lifetime = proxy_stack.entra.access_token_lifetime
    g = start_gateway(proxy_stack, loop_thread, tmp_path)
    yield g
    proxy_stack.entra.access_token_lifetime = lifetime
    proxy_stack.mail.set_idle_timeout(30 * 60.0)
    for c in g.clients:
        c.close()
    loop_thread.run(g.server.stop())


class Stream:
    """/mail/events read on a thread; its lines arrive in ``lines``."""

    def __init__(self, client: Any, folder: str = "INBOX") -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.opened = threading.Event()
        self._stop = False
        self.response: httpx.Response
        self._thread = threading.Thread(target=self._read, args=(client, folder), daemon=True)
        self._thread.start()
        assert self.opened.wait(20), "the event stream did not open"

    def _read(self, client: Any, folder: str) -> None:
        try:
            self._read_lines(client, folder)
        except Exception:      # closed by close(), or the server stopped
            self.lines.put("(stream closed)")

    def _read_lines(self, client: Any, folder: str) -> None:
        with client.stream("GET", "/mail/events", params={"f": folder}, timeout=120) as r:
            assert r.status_code == 200
            self.response = r
            self.opened.set()
            for line in r.iter_lines():
                self.lines.put(line)
                if self._stop:
                    return

    def wait_for(self, wanted: str, seconds: float = 30) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line == wanted:
                return True
        return False

    def close(self) -> None:
        self._stop = True
        self.response.close()
        self._thread.join(10)


def _logins(gw: Gateway, who: str) -> int:
    assert gw.stack.mail is not None
    return gw.stack.mail.imap_logins(user(who).email)


def test_pages_and_stream_share_one_login(gw: Gateway) -> None:
    """A member with pages open and a stream running logs in to IMAP exactly once; pages
    are answered while the stream IDLEs (it yields the connection), and new mail is still
    announced after them."""
    assert gw.stack.mail is not None
    before = _logins(gw, "member2")
    client = sign_in(gw, "member2")
    assert client.get("/mail").status_code == 200
    stream = Stream(client)
    try:
        assert stream.wait_for("retry: 15000")
        time.sleep(0.5)                     # the stream is in IDLE now
        for path in ("/mail", "/mail?f=Sent%20Items", "/mail", "/calendar"):
            assert client.get(path).status_code == 200, path
        gw.stack.mail.deliver(user("member2").email, message(unique("Pushed"),
                                                            to=user("member2").email))
        assert stream.wait_for("event: mail"), stream.seen
        assert client.get("/mail").status_code == 200
        assert _logins(gw, "member2") - before == 1
        assert gw.stack.mail.imap_connected(user("member2").email) == 1
        assert "event: lost" not in stream.seen
    finally:
        stream.close()
    # The member leaves the list page (the stream closes mid-IDLE) and opens others, and
    # a new list page with its stream: still the one login.
    time.sleep(0.5)
    assert client.get("/mail?f=Sent%20Items").status_code == 200
    again = Stream(client)
    try:
        assert again.wait_for("retry: 15000")
        assert client.get("/mail").status_code == 200
    finally:
        again.close()
    assert client.get("/mail").status_code == 200
    assert _logins(gw, "member2") - before == 1


def test_expired_token_reconnects_quietly(gw: Gateway) -> None:
    """Exchange ends a session whose token expired (``* BYE Session invalidated -
    AccessTokenExpired``): the pool logs in again with a fresh token, pages keep working
    with no error shown, and the stream keeps announcing new mail."""
    assert gw.stack.mail is not None and gw.stack.entra is not None
    gw.stack.entra.access_token_lifetime = 3
    client = sign_in(gw, "admin")
    before = _logins(gw, "admin")
    first = client.get("/mail")
    assert first.status_code == 200
    stream = Stream(client)
    try:
        assert stream.wait_for("retry: 15000")
        time.sleep(4)                        # past the token's expiry: the proxy said BYE
        page = client.get("/mail")
        assert page.status_code == 200 and "could not" not in page.text
        gw.stack.mail.deliver(user("admin").email, message(unique("After expiry"),
                                                          to=user("admin").email))
        assert stream.wait_for("event: mail"), stream.seen
        assert "event: lost" not in stream.seen
        assert _logins(gw, "admin") - before >= 2    # it did log in again
    finally:
        stream.close()


def test_idle_ended_by_the_server_is_resumed(gw: Gateway) -> None:
    """The server ends IDLE (Exchange after 30 minutes; here 1.5 s) again and again: the
    stream resumes on a new connection each time and new mail is still announced."""
    assert gw.stack.mail is not None
    gw.stack.mail.set_idle_timeout(1.5)
    client = sign_in(gw, "member")
    before = _logins(gw, "member")
    stream = Stream(client)
    try:
        assert stream.wait_for("retry: 15000")
        time.sleep(4)                        # at least two IDLEs cut by the server
        assert _logins(gw, "member") - before >= 2
        gw.stack.mail.deliver(user("member").email, message(unique("After the cut")))
        assert stream.wait_for("event: mail"), stream.seen
        assert "event: lost" not in stream.seen
        assert client.get("/mail").status_code == 200
    finally:
        stream.close()
