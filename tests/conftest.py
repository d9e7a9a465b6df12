"""Shared fixtures: the real dev stack (Entra stand-in over TLS, Dovecot, SMTP) running in a
background event loop for the whole session, and gateways served over HTTPS on loopback.

Tests talk to everything over real sockets. The gateway gets an injected clock so that
expiry tests move time instead of sleeping."""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from typing import Any, AnyStr, Protocol, TypedDict, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.devstack.procs import free_port
from gateway.devstack.runner import TLSServer
from gateway.devstack.stack import DevStack
from gateway.devstack.users import user
from gateway.services import Running, app_state
from gateway.store.base import Store

T = TypeVar("T")


def ca_context(stack: DevStack) -> ssl.SSLContext:
    assert stack.certs is not None
    return ssl.create_default_context(cafile=str(stack.certs.ca_cert))


class LoopThread:
    """An event loop in a daemon thread; sync tests hand it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.run(cancel_rest(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            if not self.thread.is_alive():
                self.loop.close()


class FakeClock:
    """Real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class RunLog:
    """Everything the gateway and the stand-ins log during the whole test run, written the
    way production writes it (JSON, through the redacting filter)."""

    def __init__(self) -> None:
        import io
        import logging

        from gateway.logging import make_handler
        self.stream = io.StringIO()
        self.handler = make_handler(self.stream)
        self.handler.setLevel(logging.DEBUG)
        self._logging = logging

    def attach(self) -> None:
        root = self._logging.getLogger()
        if self.handler not in root.handlers:
            root.addHandler(self.handler)
        if root.level > self._logging.DEBUG or root.level == 0:
            root.setLevel(self._logging.DEBUG)
        # As in production (gateway.logging.setup_logging): chatty libraries stay quiet.
        for name in ("urllib3", "httpcore", "hpack", "msal", "mail.log", "aioimaplib",
                     "asyncio", "hypothesis"):
            self._logging.getLogger(name).setLevel(self._logging.WARNING)

    def text(self) -> str:
        return self.stream.getvalue()


# Bodies that the seeder and the mail tests put in mailboxes and sent.
LOGGED_NEVER = ("New funding for community halls opens next week", "Precious words",
                "Do not lose me", "Meeting at 10?", "Sent without JavaScript.", "Try again")
# The stand-in stacks this run started (the ``stack`` fixture), for the log scan at the end.
_STACKS: list[DevStack] = []


def found(match: re.Match[AnyStr] | None) -> re.Match[AnyStr]:
    """The match of a search the test relies on, failing the test when there was none."""
    assert match is not None, "the pattern is not in the text"
    return match


def log_leaks(text: str, secrets: list[str], jwts: list[str]) -> list[str]:
    """What of the run's own secrets appears in ``text``: tokens, codes and refresh tokens
    (whole), JWT signatures (their first 40 characters), mail bodies, the session cookie.
    Shown shortened, so the report of a leak does not leak it again."""
    found = [x[:12] + "…" for x in secrets if x and x in text]
    found += [f"JWT signature {j.split('.')[2][:8]}…" for j in jwts if j.count(".") == 2
              and j.split(".")[2][:40] in text]
    found += [f"mail body {b[:8]}…" for b in LOGGED_NEVER if b in text]
    if "__Host-gw_session=" in text:
        found.append("session cookie")
    return found


@pytest.fixture(scope="session")
def run_log() -> RunLog:
    return RunLog()


@pytest.fixture(scope="session", autouse=True)
def _scan_the_run_log_at_the_end(run_log: RunLog) -> Iterator[None]:
    """When the whole session has run: the logs of the run (the gateway's and the stand-ins',
    written as production writes them) hold no token, authorization code, refresh token,
    session cookie or mail body that the run produced. A leak fails the run (an error at the
    teardown of its last test), whichever tests were selected and in whatever order."""
    yield
    text = run_log.text()
    secrets = [x for st in _STACKS for x in (*st.signer.issued, *st.entra.handed_out)]
    jwts = [t for st in _STACKS for t in st.signer.issued]
    leaked = log_leaks(text, secrets, jwts)
    if leaked:
        pytest.fail(f"the run's logs hold secrets or mail content: {leaked}")


@pytest.fixture(autouse=True)
def _keep_run_log_attached(run_log: RunLog) -> Iterator[None]:
    # Some tests reconfigure logging (gateway.logging.setup_logging); put ours back.
    run_log.attach()
    yield


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mail-mode", choices=("exchange", "permissive"), default="exchange",
        help="IMAP server for the mail tests: 'exchange' (the default) puts Exchange Online's "
             "personality (gateway.devstack.exchange_imap) in front of Dovecot; 'permissive' "
             "is plain Dovecot, which accepts what Exchange refuses")


def pytest_report_header(config: pytest.Config) -> str:
    return f"mail mode: {config.getoption('--mail-mode')}"


# The fixtures whose mail server follows --mail-mode. In permissive mode the suite runs only the
# tests that use one of them: every other test meets the same servers in both modes, so running
# it again would prove nothing (it is deselected, not skipped, and the first pass runs it).
MODE_FIXTURES = frozenset({"stack", "fault_stack"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--mail-mode") != "permissive":
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        (keep if names & MODE_FIXTURES else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class ExchangeMode(TypedDict):
    exchange_capabilities: bool
    exchange_proxy: bool


def exchange_mode(config: pytest.Config) -> ExchangeMode:
    """DevStack/MailServer arguments for the chosen --mail-mode."""
    on = config.getoption("--mail-mode") == "exchange"
    return {"exchange_capabilities": on, "exchange_proxy": on}


@pytest.fixture(scope="session")
def stack(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory,
          pytestconfig: pytest.Config) -> Iterator[DevStack]:
    s = DevStack(tmp_path_factory.mktemp("stack"), seed_messages=40,
                 **exchange_mode(pytestconfig))
    _STACKS.append(s)
    loop_thread.run(s.start())
    yield s
    loop_thread.run(s.stop())


@dataclass
class Gateway:
    url: str
    settings: Settings
    app: Any
    clock: FakeClock
    server: TLSServer
    stack: DevStack
    loop: LoopThread
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kw: Any) -> httpx.Client:
        assert self.stack.certs is not None
        c = httpx.Client(base_url=self.url, verify=ca_context(self.stack),
                         follow_redirects=False, trust_env=False, timeout=30, **kw)
        self.clients.append(c)
        return c

    def running(self) -> Running:
        """What the gateway's lifespan started (its health monitor, the purges)."""
        running = app_state(self.app).running
        assert running is not None, "the gateway is not running"
        return running

    def stop(self) -> None:
        """Close the clients this gateway handed out and stop its server."""
        for c in self.clients:
            c.close()
        self.loop.run(self.server.stop())


def start_gateway(stack: DevStack, loop: LoopThread, tmp_path: Any, *, store: Store | None = None,
                  **overrides: Any) -> Gateway:
    """A gateway over HTTPS on loopback with the settings ``overrides`` (``section__key``),
    its SQLite store in ``tmp_path`` (or ``store``, one the test made, on that file)."""
    assert stack.certs is not None
    clock = FakeClock()
    port = free_port()  # first: the settings' public URL must name it
    # Tests of mail and sign-in run with the standby route switched on; the failover
    # tests choose their own mode.
    overrides.setdefault("failover__initial_mode", "active")
    settings = stack.gateway_settings(port, store__sqlite_path=str(tmp_path / "gw.db"),
                                      **overrides)
    app = create_app(settings, store=store, clock=clock)
    server = TLSServer(app, stack.certs, port=port)
    loop.run(server.start())
    return Gateway(server.url, settings, app, clock, server, stack, loop)


@contextmanager
def running_gateway(stack: DevStack, loop: LoopThread, tmp_path: Any, *,
                    store: Store | None = None, **overrides: Any) -> Iterator[Gateway]:
    """A gateway started as ``start_gateway`` does and stopped (its clients closed) on
    leaving."""
    gw = start_gateway(stack, loop, tmp_path, store=store, **overrides)
    try:
        yield gw
    finally:
        gw.stop()


def module_gateway(name: str, **overrides: Any) -> Callable[..., Iterator[Gateway]]:
    """A module-scoped gateway fixture (assign it to `gw` in the test module): one gateway
    with `overrides` on the session's dev stack for all the module's tests, its database in
    a temporary folder named `name`."""

    @pytest.fixture(scope="module")
    def gw(stack: DevStack, loop_thread: LoopThread,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
        with running_gateway(stack, loop_thread, tmp_path_factory.mktemp(name),
                             **overrides) as g:
            yield g

    return gw


def signed_in(who: str = "member") -> Callable[..., httpx.Client]:
    """A module-scoped fixture: a client signed in as the sample user `who` to the module's
    `gw` once, for all the module's tests."""

    @pytest.fixture(scope="module")
    def client(gw: Gateway) -> httpx.Client:
        return sign_in(gw, who)

    return client


@pytest.fixture
def gateway(stack: DevStack, loop_thread: LoopThread, tmp_path: Any) -> Iterator[Gateway]:
    with running_gateway(stack, loop_thread, tmp_path) as gw:
        yield gw


def form_fields(html: str) -> dict[str, str]:
    """The hidden inputs of a page (the stand-in's form_post page, a gateway form)."""
    fields = {}
    for tag in re.findall(r"<input[^>]+>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[unescape(name.group(1))] = unescape(value.group(1)) if value else ""
    return fields


def form_action(html: str) -> str:
    m = re.search(r'<form[^>]+action="([^"]+)"', html)
    assert m, "no form on the page"
    return unescape(m.group(1))


class SignInTarget(Protocol):
    """A gateway a test signs in to: in this process (Gateway) or its own (ProcGateway)."""

    url: str
    stack: DevStack

    def client(self, **kw: Any) -> httpx.Client: ...


@dataclass
class EntraReply:
    """What the stand-in's form_post page would make the browser send to the gateway."""

    action: str
    fields: dict[str, str]


def authorize(gw: SignInTarget, client: httpx.Client, who: str, next_path: str = "/",
              extra: str = "") -> EntraReply:
    """Start sign-in at the gateway and let the stand-in sign `who` in at once (dev_auto)."""
    u = user(who)
    r = client.get("/auth/start", params={"next": next_path, "login_hint": u.email})
    assert r.status_code == 303, r.text
    location = r.headers["location"] + "&dev_auto=1" + extra
    assert gw.stack.certs is not None
    with httpx.Client(verify=ca_context(gw.stack), trust_env=False) as entra_browser:
        page = entra_browser.get(location)
    assert page.status_code == 200, page.text
    return EntraReply(form_action(page.text), form_fields(page.text))


def post_callback(gw: SignInTarget, client: httpx.Client, reply: EntraReply) -> httpx.Response:
    assert gw.stack.entra is not None
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(gw.stack.entra.base_url))
    path = urlsplit(reply.action).path
    return client.post(path, data=reply.fields, headers={"Origin": origin})


def sign_in(gw: SignInTarget, who: str = "member", next_path: str = "/") -> httpx.Client:
    """A client signed in as the sample user `who`."""
    client = gw.client()
    r = post_callback(gw, client, authorize(gw, client, who, next_path))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == next_path
    return client


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    page = client.get(path)
    return form_fields(page.text)["csrf_token"]


@pytest.fixture(scope="session")
def exchange_stack(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory,
                   request: pytest.FixtureRequest) -> Iterator[DevStack]:
    """A second dev stack with Exchange Online's IMAP personality: Dovecot advertising only
    Exchange's capabilities, behind the proxy that refuses what Exchange refuses: the main
    stack itself in the default --mail-mode=exchange, a second one in permissive mode."""
    if exchange_mode(request.config)["exchange_proxy"]:
        yield request.getfixturevalue("stack")
        return
    s = DevStack(tmp_path_factory.mktemp("exchange-stack"), exchange_capabilities=True,
                 exchange_proxy=True, seed_messages=20)
    _STACKS.append(s)
    loop_thread.run(s.start())
    yield s
    loop_thread.run(s.stop())


@pytest.fixture
def exchange_gateway(exchange_stack: DevStack, loop_thread: LoopThread,
                     tmp_path: Any) -> Iterator[Gateway]:
    with running_gateway(exchange_stack, loop_thread, tmp_path) as gw:
        yield gw
