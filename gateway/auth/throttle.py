"""Per-address limits for what anonymous clients can make the gateway do, and the digest
that keeps their refusals from flooding the audit trail.

Rule: anonymous clients cannot make the gateway do unbounded work or storage. So:

- ``Window``: at most ``limit`` events per address in a fixed window; past it the caller
  answers 429 with ``Retry-After`` (the window's rest) before doing any work. Addresses are
  bucketed (IPv6 by /64, since one host holds a whole /64) and at most ``max_keys`` are
  remembered (the oldest forgotten), so the table itself is bounded. A ``total`` limit caps
  all addresses together (many addresses, one attacker).
- ``RefusalDigest``: the first refusal from an address in a window gets its own audit entry;
  the rest are counted and written as one aggregated entry per window (``flush``), so a
  flood of bad API keys costs a few audit rows a minute, not one per request.

In memory, per instance: limits are per instance (a deployment of N instances allows N times
as much), which is what bounds each instance's own work.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from gateway.config import Settings


def address_of(scope: Scope) -> str:
    """The client's address as a bucket: IPv4 as is, IPv6 by its /64."""
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class _Count:
    start: float
    count: int = 0


class Window:
    def __init__(self, limit: int, window: float, clock: Callable[[], float], *,
                 total: int | None = None, max_keys: int = 10_000) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self.total, self.max_keys = total, max_keys
        self._keys: OrderedDict[str, _Count] = OrderedDict()
        self._all = _Count(0.0)

    def _current(self, c: _Count, now: float) -> _Count:
        if now - c.start >= self.window:
            c.start, c.count = now, 0
        return c

    def hit(self, key: str) -> int | None:
        """Count one event for ``key``; None if allowed, else seconds to wait."""
        now = self.clock()
        c = self._keys.pop(key, None) or _Count(now)
        self._keys[key] = self._current(c, now)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        every = self._current(self._all, now)
        if c.count >= self.limit:
            return max(1, math.ceil(c.start + self.window - now))
        if self.total is not None and every.count >= self.total:
            return max(1, math.ceil(every.start + self.window - now))
        c.count += 1
        every.count += 1
        return None

    def over(self, key: str) -> int | None:
        """Seconds to wait if ``key`` has used its window up (without counting)."""
        now = self.clock()
        c = self._keys.get(key)
        if c is None or now - c.start >= self.window or c.count < self.limit:
            return None
        return max(1, math.ceil(c.start + self.window - now))


class RefusalDigest:
    """Which refusals get their own audit entry; the rest are folded into one per window."""

    def __init__(self, window: float, clock: Callable[[], float], *, individual: int = 60,
                 max_keys: int = 10_000) -> None:
        self.window, self.clock = window, clock
        self._seen = Window(1, window, clock, total=individual, max_keys=max_keys)
        self.folded: dict[str, int] = {}
        self.started = clock()

    def note(self, key: str) -> bool:
        """True: write this refusal's own entry now; False: it was counted for ``flush``."""
        if self._seen.hit(key) is None:
            return True
        if key in self.folded or len(self.folded) < self._seen.max_keys:
            self.folded[key] = self.folded.get(key, 0) + 1
        else:
            self.folded["(other addresses)"] = self.folded.get("(other addresses)", 0) + 1
        return False

    def due(self) -> bool:
        return bool(self.folded) and self.clock() - self.started >= self.window

    def take(self) -> dict[str, object]:
        """The aggregated entry's data for the refusals folded since the last one."""
        folded, self.folded = self.folded, {}
        since, self.started = self.started, self.clock()
        top = sorted(folded.items(), key=lambda kv: -kv[1])[:5]
        return {"aggregated": True, "refusals": sum(folded.values()),
                "addresses": len(folded), "top": dict(top), "since": round(since, 3)}


@dataclass
class Limits:
    """The gateway's anonymous-client limits, built once per app from the settings."""

    api_refused: Window
    api_digest: RefusalDigest
    signin: Window

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float],
                      signin_window: float) -> Limits:
        access = settings.access
        return cls(
            api_refused=Window(access.api_refusals_per_minute, 60.0, clock),
            api_digest=RefusalDigest(60.0, clock),
            signin=Window(access.signin_starts_per_address, signin_window, clock,
                          total=access.signin_starts_total))
