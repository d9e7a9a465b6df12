"""The version guard for the command line and the API: which version of the failover switch
each caller last looked at, so that a change made from a stale view is refused.

The admin page always sends the version its form showed. The CLI and the API accept one
explicitly (``--expect-version N``; ``"version": N`` or ``If-Match: "N"``); without it, the
version the same caller (``cli:<login>``, ``api:<key name>``) last saw, from ``failover
status``, ``GET /api/failover`` or its own last change, is used. So a caller who looked, and
then another change happened (a colleague's flip, an end time passing), is refused with
``Conflict`` and told what changed. A caller who never looked is not guarded: a first blind
``activate`` in an emergency runbook works.

The records live in the store's key-value table (``failover.seen:<caller>``); losing one only
loses the guard for that caller's next change.
"""

from __future__ import annotations

import logging

from gateway.errors import Conflict, StoreUnavailable
from gateway.store.base import Store
from gateway.switch.machine import SwitchState, changed_meanwhile

log = logging.getLogger(__name__)
PREFIX = "failover.seen:"


async def remember(store: Store, caller: str, version: int) -> None:
    """Note that ``caller`` has seen the switch at ``version``. Never fails the caller's
    request: a store that cannot note it only loses the guard."""
    key = PREFIX + caller
    for _ in range(3):
        try:
            rec = await store.kv_get(key)
            if rec is not None and rec.value == str(version):
                return
            await store.kv_put(key, str(version), rec.version if rec else 0)
            return
        except Conflict:
            continue           # the same caller in two terminals at once: read again
        except StoreUnavailable:
            log.warning("could not note the switch version a caller saw")
            return


async def last_seen(store: Store, caller: str) -> int | None:
    rec = await store.kv_get(PREFIX + caller)
    try:
        return int(rec.value) if rec else None
    except ValueError:
        return None


def stale_view(state: SwitchState, seen: int) -> str:
    """The refusal for a caller whose last look is older than the switch."""
    return (changed_meanwhile(state) +
            f" (You last saw version {seen}; it is now at version {state.version}.)")
