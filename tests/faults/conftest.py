"""The fault suite's rig: its own dev stack (so stopping Dovecot or slowing SMTP here never
disturbs other tests), gateways started with fault-friendly settings, and the three things
every fault test asserts: what the member sees (the page), what the SMTP server received
(counted at the server, exactly once) and what the store holds (the outbox record).

Store failures are injected at the store seam of ``create_app(store=...)``: ``FullDisk``
wraps the real SQLite store and fails its writes as SQLite does on a full disk
(``sqlite3.OperationalError: database or disk is full``, which the store reports as
``StoreUnavailable``); reads keep working, as they do on a full disk.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.devstack.runner import TLSServer
from gateway.devstack.stack import DevStack
from gateway.errors import StoreUnavailable
from gateway.mail.outbox import Outbox
from gateway.store.sqlite import SqliteStore
from tests.conftest import FakeClock, Gateway, LoopThread, ca_context, exchange_mode, form_fields

# Store methods that write; FullDisk fails them while ``full`` is set.
WRITES = {"ping", "create_session", "touch_session", "delete_session", "delete_sessions_of",
          "purge_sessions", "put_flow", "take_flow", "purge_flows", "put_token_cache",
          "delete_token_cache", "put_outbox", "delete_outbox", "claim_outbox",
          "release_outbox", "kv_put", "audit_append", "create_api_key", "revoke_api_key",
          "touch_api_key", "purge_outbox"}
EXTERNAL = "partner@elsewhere.example"


class FullDisk:
    """The real SQLite store, with writes failing while ``full`` is True."""

    def __init__(self, path: Path) -> None:
        self.inner = SqliteStore(path)
        self.full = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in WRITES:
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            if self.full:
                raise StoreUnavailable()
            return await attr(*args, **kwargs)
        return write


@pytest.fixture(scope="session")
def fault_stack(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory,
                pytestconfig: pytest.Config) -> Iterator[DevStack]:
    s = DevStack(tmp_path_factory.mktemp("fault-stack"), seed_messages=3,
                 **exchange_mode(pytestconfig))
    loop_thread.run(s.start())
    yield s
    loop_thread.run(s.stop())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    """Starts gateways on the fault stack and makes sure servers are back up afterwards."""

    def __init__(self, stack: DevStack, loop: LoopThread, tmp_path: Path) -> None:
        self.stack, self.loop, self.tmp_path = stack, loop, tmp_path
        self.gateways: list[Gateway] = []

    def gateway(self, store: Any = None, **overrides: Any) -> Gateway:
        assert self.stack.certs is not None
        port = free_port()
        overrides.setdefault("failover__initial_mode", "active")
        overrides.setdefault("smtp__timeout_seconds", 3.0)
        overrides.setdefault("imap__timeout_seconds", 3.0)
        overrides.setdefault("health__interval_seconds", 0.3)
        overrides.setdefault("health__timeout_seconds", 2.0)
        db = self.tmp_path / f"gw-{port}.db"
        settings = self.stack.gateway_settings(port, store__sqlite_path=str(db), **overrides)
        clock = FakeClock()
        app = create_app(settings, clock=clock, store=store)
        server = TLSServer(app, self.stack.certs, port=port)
        self.loop.run(server.start())
        gw = Gateway(server.url, settings, app, clock, server, self.stack, self.loop)
        self.gateways.append(gw)
        return gw

    def close(self) -> None:
        mail = self.stack.mail
        assert mail is not None
        for gw in self.gateways:
            for c in gw.clients:
                c.close()
            self.loop.run(gw.server.stop())
        if not mail.imap_running:
            self.loop.run(mail.start_imap())
        if not mail.smtp_running:
            self.loop.run(mail.start_smtp())
        mail._reply_delays.clear()


@pytest.fixture
def rig(fault_stack: DevStack, loop_thread: LoopThread, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(fault_stack, loop_thread, tmp_path)
    yield r
    r.close()


@dataclass
class ProcGateway:
    """The gateway as its own process (``gateway serve``), to be SIGKILLed."""

    url: str
    stack: DevStack
    loop: LoopThread
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    @classmethod
    def prepare(cls, rig: Rig, **env: str) -> ProcGateway:
        """A gateway process on a free port with the fault stack's settings plus ``env``
        (not started yet)."""
        port = free_port()
        full = {**os.environ, **rig.stack.gateway_env(port)}
        full.update(GATEWAY_STORE_SQLITE_PATH=str(rig.tmp_path / f"proc-{port}.db"),
                    GATEWAY_FAILOVER_INITIAL_MODE="active", GATEWAY_GENERAL_LOG_LEVEL="warning")
        full.update(env)
        return cls(f"https://127.0.0.1:{port}", rig.stack, rig.loop, full,
                   rig.tmp_path / f"gw-{port}.log")

    def client(self, **kw: Any) -> httpx.Client:
        c = httpx.Client(base_url=self.url, verify=ca_context(self.stack),
                         follow_redirects=False, trust_env=False, timeout=60, **kw)
        self.clients.append(c)
        return c

    def start(self) -> None:
        gateway_cmd = Path(sys.executable).with_name("gateway")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(gateway_cmd), "serve"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        with httpx.Client(verify=ca_context(self.stack), trust_env=False, timeout=2) as c:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                try:
                    if c.get(self.url + "/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise AssertionError("gateway did not start: " + self.log.read_text()[-2000:])

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def compose_form(client: httpx.Client, page: httpx.Response | str) -> tuple[str, dict[str, Any]]:
    """The compose form on a page (or at a path): its action and fields as a browser would
    send them (hidden fields, text inputs, the body, the checked keep_part boxes)."""
    html = page if isinstance(page, str) and page.lstrip().startswith("<") else None
    if html is None:
        r = client.get(page) if isinstance(page, str) else page
        html = r.text
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*id="compose-form".*?</form>',
                     html, re.S)
    assert form, "no compose form on the page"
    action = unescape(form.group(1))
    fields: dict[str, Any] = form_fields(form.group(0))
    for name in ("attach", "drop_file", "keep_part", "carry_file"):
        fields.pop(name, None)
    keep = re.findall(r'name="keep_part" value="([^"]*)" checked', form.group(0))
    if keep:
        fields["keep_part"] = [unescape(k) for k in keep]
    carry = re.findall(r'name="carry_file" value="([^"]*)"', form.group(0))
    if carry:
        fields["carry_file"] = [unescape(c) for c in carry]
    body = re.search(r'<textarea id="body" name="body"[^>]*>(.*?)</textarea>', html, re.S)
    if body:
        fields["body"] = unescape(body.group(1))
    return action, fields


def received(stack: DevStack, subject: str) -> list[bytes]:
    """Every copy of a message the SMTP server took for outside delivery, by subject."""
    assert stack.mail is not None
    return [m.data for m in stack.mail.outbound
            if re.search(rb"^Subject: " + re.escape(subject.encode()) + rb"\r?$", m.data,
                         re.M)]


def outbox_of(gw: Gateway, client: httpx.Client) -> list[tuple[str, str, Any]]:
    """What the store holds for this member's outbox: (id, state, decrypted draft)."""
    svc = gw.app.state.gateway.services
    session = gw.loop.run(svc.store.get_session(client.cookies.get("__Host-gw_session")))
    assert session is not None
    box = Outbox(svc.store, svc.keyring)
    recs = gw.loop.run(svc.store.list_outbox(session.user_oid))
    return [(r.id, r.state, gw.loop.run(box.load(r.id, session.user_oid))) for r in recs]
