"""The failover switch: who may use the gateway right now.

Three parts, kept apart (the state machine calls handlers it is given, as aiosmtpd's protocol
calls its handler):

- the pure machine: ``SwitchState``, ``Flip``, ``apply`` (validate a change), ``settle``
  (expiry: an expired ``active`` or ``drill`` falls back to ``standby``) and ``admits``
  (admission in a mode). No I/O, no clock of its own.
- ``Switch``: the state's persistence in the store under optimistic concurrency (a flip based
  on a stale version is refused with ``Conflict``, so no update is lost), an in-memory copy
  refreshed at most every ``failover.refresh_seconds`` (several instances may share a store),
  and the last known state kept when the store is down (flips then fail with
  ``StoreUnavailable``). After each committed change it calls its ``SwitchListener``s: the
  audit trail (``AuditTrail``) and the notifier (``gateway.switch.notify``).
- ``FailoverPolicy``: the ``AccessPolicy`` the access gate asks on every request.

Modes: ``standby`` admits ICT admins and the pilot groups; ``active`` every entitled member;
``drill`` admins, pilot groups and the drill's named group, and it must end at a set time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.auth.access import Admission
from gateway.errors import BadRequest, Conflict, StoreUnavailable
from gateway.store.base import SessionRecord, Store
from gateway.switch.audit import AuditLog, iso

log = logging.getLogger(__name__)

STATE_KEY = "failover.state"
MAX_REASON = 500
MAX_MESSAGE = 1000
SYSTEM = "system"


class Mode(StrEnum):
    STANDBY = "standby"
    ACTIVE = "active"
    DRILL = "drill"


def parse_mode(raw: str) -> Mode:
    try:
        return Mode(raw.strip().lower())
    except ValueError:
        raise BadRequest(f"Unknown mode {raw!r}: use standby, active or drill.") from None


@dataclass(frozen=True)
class SwitchState:
    mode: Mode
    since: float
    by: str
    reason: str
    until: float | None = None
    group: str = ""          # drill only: the Entra group that may enter
    message: str = ""        # ICT's message to members (status and standby pages)
    version: int = 0         # the store version this was read at; 0 = never stored

    def expired(self, now: float) -> bool:
        return self.until is not None and now >= self.until

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("version")
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, version: int) -> SwitchState:
        d = json.loads(text)
        return cls(mode=Mode(d["mode"]), since=float(d["since"]), by=d["by"],
                   reason=d["reason"], until=d.get("until"), group=d.get("group", ""),
                   message=d.get("message", ""), version=version)

    def public(self) -> dict[str, Any]:
        """The JSON shape the API and the CLI show."""
        return {"mode": str(self.mode), "since": iso(self.since), "by": self.by,
                "reason": self.reason, "until": iso(self.until) if self.until else None,
                "group": self.group or None, "message": self.message, "version": self.version}


def initial_state(mode: Mode) -> SwitchState:
    return SwitchState(mode=mode, since=0.0, by=SYSTEM, reason="initial setting")


@dataclass(frozen=True)
class Flip:
    """A request to change the switch, from any of the three controls."""

    mode: str
    reason: str
    by: str
    until: float | None = None
    group: str = ""
    message: str = ""
    expected_version: int | None = None   # the version the requester saw, if it knows


def apply(state: SwitchState, flip: Flip, now: float) -> SwitchState:
    """The state after ``flip``, or the error that refuses it. Pure."""
    mode = parse_mode(flip.mode)
    reason = flip.reason.strip()
    if not reason:
        raise BadRequest("A reason is required: say why the switch is changing.")
    if len(reason) > MAX_REASON or len(flip.message) > MAX_MESSAGE:
        raise BadRequest("The reason or message is too long.")
    if not flip.by.strip():
        raise BadRequest("The change must name who makes it.")
    if flip.expected_version is not None and flip.expected_version != state.version:
        raise Conflict(changed_meanwhile(state))
    if flip.until is not None and flip.until <= now:
        raise BadRequest("That end time has already passed. Choose a time in the future.")
    if mode is Mode.STANDBY and flip.until is not None:
        raise BadRequest("Standby is the resting state; it takes no end time.")
    if mode is Mode.DRILL and (not flip.group.strip() or flip.until is None):
        raise BadRequest("A drill needs the group that takes part and the time it ends.")
    if mode is not Mode.DRILL and flip.group.strip():
        raise BadRequest("Only a drill names a group.")
    return SwitchState(mode=mode, since=now, by=flip.by.strip(), reason=reason,
                       until=flip.until, group=flip.group.strip(),
                       message=flip.message.strip(), version=state.version)


def settle(state: SwitchState, now: float) -> SwitchState | None:
    """The standby state that replaces ``state`` once its end time has passed, else None."""
    if not state.expired(now) or state.until is None:
        return None
    return SwitchState(mode=Mode.STANDBY, since=state.until, by=SYSTEM,
                       reason=f"{state.mode} ended at its set time ({state.reason})",
                       version=state.version)


def admits(state: SwitchState, *, is_admin: bool, groups: Iterable[str],
           pilot_groups: Iterable[str]) -> bool:
    """May an entitled person with these groups use the gateway in ``state``? Pure."""
    if is_admin or state.mode is Mode.ACTIVE:
        return True
    mine = set(groups)
    if mine & set(pilot_groups):
        return True
    return state.mode is Mode.DRILL and state.group in mine


def changed_meanwhile(state: SwitchState) -> str:
    return (f"The switch was changed meanwhile: {state.by} set it to {state.mode} at "
            f"{iso(state.since)} ({state.reason}). Nothing was changed; review and try again.")


# -- times, for the three controls alike

_RELATIVE = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*([mhd])$")


def parse_time(text: str, now: float, tz: str = "UTC") -> float:
    """``+90m``, ``2h``, ``1d`` from now, or ISO 8601; a time without offset is in ``tz``."""
    raw = text.strip()
    m = _RELATIVE.match(raw.lower())
    if m:
        unit = {"m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now + float(m.group(1)) * unit
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{text!r} is not a time: use ISO 8601 (2026-03-01T18:00) or a "
                         "duration such as 90m, 2h or 1d.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.timestamp()


def local(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%a %d %b %Y %H:%M %Z")


def duration_text(seconds: float) -> str:
    d = timedelta(seconds=int(seconds))
    hours, rest = divmod(d.seconds, 3600)
    parts = ([f"{d.days}d"] if d.days else []) + [f"{hours}h", f"{rest // 60:02d}m"]
    return " ".join(parts)


# -- persistence and listeners

class SwitchListener(Protocol):
    async def switched(self, old: SwitchState, new: SwitchState) -> None: ...


class AuditTrail:
    """Writes every change of the switch to the audit chain."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    async def switched(self, old: SwitchState, new: SwitchState) -> None:
        await self.audit.record(
            "failover.changed", new.by, old=str(old.mode), new=str(new.mode),
            reason=new.reason, since=new.since, until=new.until, group=new.group,
            message=new.message, version=new.version)


class Switch:
    def __init__(self, store: Store, clock: Callable[[], float], *,
                 initial_mode: Mode = Mode.STANDBY, refresh_seconds: float = 1.0,
                 listeners: Sequence[SwitchListener] = ()) -> None:
        self.store = store
        self.clock = clock
        self.initial = initial_state(initial_mode)
        self.refresh_seconds = refresh_seconds
        self.listeners = list(listeners)
        self.store_ok = True
        self._state: SwitchState | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """The stored state may have changed (a change notice from the store): the next
        ``current()`` re-reads it, whatever ``refresh_seconds`` says."""
        self._loaded_at = float("-inf")

    def last_known(self) -> SwitchState:
        """The state as last read, without I/O (metrics, health)."""
        return self._state or self.initial

    async def current(self) -> SwitchState:
        """The state in force now: cheap (memory), refreshed from the store at most every
        ``refresh_seconds``; an expired state is settled (and recorded) on the way."""
        now = self.clock()
        if self._state is None or now - self._loaded_at >= self.refresh_seconds:
            await self._refresh(now)
        assert self._state is not None
        if self._state.expired(now):
            return await self._expire(now)
        return self._state

    async def _refresh(self, now: float) -> None:
        try:
            rec = await self.store.kv_get(STATE_KEY)
        except StoreUnavailable:
            if self.store_ok:
                log.warning("store unavailable: serving the last known failover mode")
            self.store_ok = False
            if self._state is None:
                self._state = self.initial
            self._loaded_at = now
            return
        self.store_ok = True
        self._state = SwitchState.from_json(rec.value, rec.version) if rec else self.initial
        self._loaded_at = now

    async def _read(self) -> SwitchState:
        rec = await self.store.kv_get(STATE_KEY)
        return SwitchState.from_json(rec.value, rec.version) if rec else self.initial

    async def _expire(self, now: float) -> SwitchState:
        async with self._lock:
            for _ in range(3):
                assert self._state is not None
                old = self._state
                reverted = settle(old, now)
                if reverted is None:
                    return old
                try:
                    version = await self.store.kv_put(STATE_KEY, reverted.to_json(), old.version)
                except StoreUnavailable:
                    return reverted  # honour the end time now; recorded once the store is back
                except Conflict:
                    await self._refresh(now)   # another instance settled or flipped it
                    continue
                self._state, self._loaded_at = replace(reverted, version=version), now
                await self._announce(old, self._state)
                return self._state
            assert self._state is not None
            return self._state

    async def flip(self, flip: Flip) -> SwitchState:
        """Apply a change: validated, stored only if nobody changed the switch meanwhile,
        then announced. Raises BadRequest, Conflict or StoreUnavailable."""
        await self.current()   # settles an expired state first, so the timeline records it
        async with self._lock:
            now = self.clock()
            old = await self._read()
            new = apply(old, flip, now)
            try:
                version = await self.store.kv_put(STATE_KEY, new.to_json(), old.version)
            except Conflict:
                raise Conflict(changed_meanwhile(await self._read())) from None
            new = replace(new, version=version)
            self._state, self._loaded_at, self.store_ok = new, now, True
        await self._announce(old, new)
        return new

    async def _announce(self, old: SwitchState, new: SwitchState) -> None:
        log.info("failover switch: %s -> %s by %s", old.mode, new.mode, new.by)
        for listener in self.listeners:
            try:
                await listener.switched(old, new)
            except Exception:
                # The change is committed; a listener's failure must not undo or hide it.
                log.exception("failover listener %s failed", type(listener).__name__)


# -- the access policy

RefusalHook = Callable[[SessionRecord, SwitchState], Any]

STANDBY_TEXT = ("Your usual council mail app is working, so this standby route is closed. "
                "Please keep using your usual app.")
DRILL_TEXT = ("ICT is rehearsing the standby route with a small group. Please keep using "
              "your usual app.")


def member_message(state: SwitchState) -> str:
    if state.message:
        return state.message
    if state.mode is Mode.ACTIVE:
        return "The standby route is open: use it to read and send your council mail."
    return DRILL_TEXT if state.mode is Mode.DRILL else STANDBY_TEXT


class FailoverPolicy:
    """Admits or refuses each request by the mode in force; members already signed in are
    let in or shown the standby page on their next request."""

    def __init__(self, switch: Switch, pilot_groups: Iterable[str],
                 on_refusal: RefusalHook | None = None) -> None:
        self.switch = switch
        self.pilot_groups = tuple(pilot_groups)
        self.on_refusal = on_refusal
        self._told: OrderedDict[tuple[str, int], None] = OrderedDict()

    async def admit(self, session: SessionRecord, path: str) -> Admission:
        state = await self.switch.current()
        if admits(state, is_admin=session.is_admin, groups=session.groups,
                  pilot_groups=self.pilot_groups):
            return Admission(admitted=True)
        await self._note_refusal(session, state)
        return Admission(admitted=False, template="standby.html", message=member_message(state))

    async def would_admit(self, session: SessionRecord) -> bool:
        """``admit``'s answer for this session now, without noting a refusal."""
        return admits(await self.switch.current(), is_admin=session.is_admin,
                      groups=session.groups, pilot_groups=self.pilot_groups)

    async def _note_refusal(self, session: SessionRecord, state: SwitchState) -> None:
        # Once per session and switch version, not on every page view.
        key = (session.id, state.version)
        if self.on_refusal is None or key in self._told:
            return
        self._told[key] = None
        while len(self._told) > 10_000:
            self._told.popitem(last=False)
        result = self.on_refusal(session, state)
        if asyncio.iscoroutine(result):
            await result
