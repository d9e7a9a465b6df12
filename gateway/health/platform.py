"""The supplier's platform, watched: the checks ICT configures in ``platform.checks`` (the
usual mobile platform's portal, its gateway, its certificate), probed like the upstreams and
kept in the history, shown in ``/health`` as ``platform:NAME`` checks that never make the
gateway itself unhealthy (``Probe.informational``): when they fail, the gateway is the answer.

One string per check (``shlex`` words, so text may be quoted)::

    https portal https://mdm.example.net/status status=200 text="All systems operational"
    tcp   relay  mdm-relay.example.net:443
    tls   edge   mdm.example.net:443 cert_days=21

- ``https``: GET the URL (no redirects followed); fail unless the status is the expected one
  (default 200) and, with ``text=``, the body contains that text.
- ``tcp``: a TCP connection is accepted.
- ``tls``: a TLS handshake with a certificate trusted for that name (``platform.ca_file`` or
  the system store); its days to expiry are the observed value, ``warn`` under ``cert_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from gateway.health.monitor import Observation, Probe, ProbeFailed

KINDS = ("https", "tcp", "tls")
BODY_LIMIT = 256 * 1024


@dataclass(frozen=True)
class PlatformCheck:
    kind: str
    name: str
    target: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"platform:{self.name}"


def parse_checks(specs: list[str]) -> list[PlatformCheck]:
    """The configured checks; ``ValueError`` names the faulty one and the fix."""
    out: list[PlatformCheck] = []
    for spec in specs:
        try:
            words = shlex.split(spec)
        except ValueError:
            raise ValueError(f"{spec!r}: unbalanced quotes.") from None
        if len(words) < 3 or words[0] not in KINDS:
            raise ValueError(f"{spec!r}: write `https|tcp|tls NAME TARGET [key=value ...]`.")
        kind, name, target = words[:3]
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"{spec!r}: the name may hold letters, digits, - and _ only.")
        options = {}
        for w in words[3:]:
            k, sep, v = w.partition("=")
            if not sep or k not in ("status", "text", "cert_days"):
                raise ValueError(f"{spec!r}: unknown option {w!r} (status=, text=, "
                                 "cert_days=).")
            options[k] = v
        if kind == "https" and urlsplit(target).scheme != "https":
            raise ValueError(f"{spec!r}: the target must be an https:// URL.")
        if kind != "https":
            host, _, port = target.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{spec!r}: the target must be HOST:PORT.")
        for k in ("status", "cert_days"):
            if k in options and not options[k].isdigit():
                raise ValueError(f"{spec!r}: {k} must be a whole number.")
        if any(c.name == name for c in out):
            raise ValueError(f"{spec!r}: the name {name!r} is used twice.")
        out.append(PlatformCheck(kind, name, target, options))
    return out


async def check_https(client: httpx.AsyncClient, check: PlatformCheck) -> None:
    want = int(check.options.get("status", "200"))
    try:
        async with client.stream("GET", check.target) as r:
            body = b""
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) >= BODY_LIMIT:
                    break
    except httpx.ConnectError as exc:
        raise ProbeFailed(f"cannot connect: {_reason(exc)}") from None
    except httpx.HTTPError as exc:
        raise ProbeFailed(f"request failed: {type(exc).__name__}") from None
    if r.status_code != want:
        raise ProbeFailed(f"answered HTTP {r.status_code}, expected {want}")
    text = check.options.get("text")
    if text and text not in body.decode("utf-8", "replace"):
        raise ProbeFailed(f"HTTP {r.status_code} but the page lacks the expected text")


def _reason(exc: Exception) -> str:
    """The root of an httpx connect error (it wraps httpcore's, which wraps the socket's)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({seen.verify_message})"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def _host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


async def check_tcp(check: PlatformCheck) -> None:
    host, port = _host_port(check.target)
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise ProbeFailed(f"TCP connection refused or unreachable: "
                          f"{exc.strerror or type(exc).__name__}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def check_tls(check: PlatformCheck, ctx: ssl.SSLContext,
                    clock: Callable[[], float]) -> Observation:
    host, port = _host_port(check.target)
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise ProbeFailed(f"certificate not accepted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise ProbeFailed(f"TLS handshake failed: {exc.reason}") from None
    except OSError as exc:
        raise ProbeFailed(f"cannot connect: {exc.strerror or type(exc).__name__}") from None
    try:
        cert = writer.get_extra_info("peercert") or {}
        not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    except (KeyError, ValueError):
        raise ProbeFailed("the server sent no readable certificate") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    days = round((not_after - clock()) / 86400, 1)
    warn_days = int(check.options.get("cert_days", "21"))
    if days < warn_days:
        return Observation(days, "d", "warn", f"certificate expires in {days:g} days")
    return Observation(days, "d")


def build_platform_probes(checks: list[PlatformCheck], *, ca_file: str, timeout: float,
                          interval: float, clock: Callable[[], float] = time.time,
                          transport: httpx.AsyncBaseTransport | None = None,
                          ) -> tuple[list[Probe], httpx.AsyncClient]:
    """The probes, and the HTTP client they share (the caller closes it)."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    client = httpx.AsyncClient(verify=ctx, trust_env=False, timeout=timeout,
                               follow_redirects=False, transport=transport)
    probes = []
    for check in checks:
        async def run(c: PlatformCheck = check) -> Observation | None:
            if c.kind == "https":
                await check_https(client, c)
                return None
            if c.kind == "tcp":
                await check_tcp(c)
                return None
            return await check_tls(c, ctx, clock)
        probes.append(Probe(check.key, run, timeout, interval=interval,
                            component_type="platform", informational=True))
    return probes, client
