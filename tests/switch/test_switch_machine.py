"""The pure failover state machine: validation of a flip, expiry, admission by mode."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequest, Conflict
from gateway.switch.machine import (
    Flip,
    Mode,
    SwitchState,
    admits,
    apply,
    initial_state,
    parse_time,
    settle,
)

NOW = 1_780_000_000.0
PILOT, DRILL = "pilot-group", "drill-group"
START = initial_state(Mode.STANDBY)


def test_activate_records_who_why_and_when() -> None:
    """A valid flip yields the new mode, stamped with now, the person and the reason."""
    new = apply(START, Flip("active", " MDM outage ", "Priya", until=NOW + 3600), NOW)
    assert (new.mode, new.since, new.by, new.reason, new.until) == (
        Mode.ACTIVE, NOW, "Priya", "MDM outage", NOW + 3600)


@pytest.mark.parametrize("flip,words", [
    (Flip("sideways", "r", "p"), "Unknown mode"),
    (Flip("active", "   ", "p"), "reason is required"),
    (Flip("active", "r", " "), "name who"),
    (Flip("drill", "r", "p", until=NOW + 60), "group"),
    (Flip("drill", "r", "p", group=DRILL), "time it ends"),
    (Flip("drill", "r", "p", group=DRILL, until=NOW - 1), "already passed"),
    (Flip("active", "r", "p", until=NOW), "already passed"),
    (Flip("standby", "r", "p", until=NOW + 60), "no end time"),
    (Flip("active", "r", "p", group=DRILL), "Only a drill"),
    (Flip("active", "x" * 501, "p"), "too long"),
])
def test_bad_flips_are_refused_with_a_reason(flip: Flip, words: str) -> None:
    """Unknown mode, missing reason, incomplete or expired drill etc. are BadRequest."""
    with pytest.raises(BadRequest, match=words):
        apply(START, flip, NOW)


def test_flip_based_on_a_stale_version_names_the_earlier_change() -> None:
    """A flip that saw an older version is a Conflict naming who changed it, to what."""
    current = SwitchState(Mode.ACTIVE, NOW - 60, "Priya", "MDM down", version=4)
    with pytest.raises(Conflict, match="Priya set it to active"):
        apply(current, Flip("standby", "fixed", "Sam", expected_version=3), NOW)
    assert apply(current, Flip("standby", "fixed", "Sam", expected_version=4), NOW).mode \
        is Mode.STANDBY


def test_expired_drill_settles_to_standby_at_its_end_time() -> None:
    """A drill past its end time becomes standby, dated at the end time, by the system."""
    drill = SwitchState(Mode.DRILL, NOW, "Priya", "rehearsal", until=NOW + 600, group=DRILL,
                        version=2)
    assert settle(drill, NOW + 599) is None
    after = settle(drill, NOW + 601)
    assert after is not None
    assert (after.mode, after.since, after.by, after.version) == (Mode.STANDBY, NOW + 600,
                                                                   "system", 2)
    assert "rehearsal" in after.reason


def test_state_without_end_time_never_settles() -> None:
    """Active with no end time stays active however long."""
    assert settle(SwitchState(Mode.ACTIVE, NOW, "p", "r"), NOW + 10**9) is None


# who: (is_admin, groups); expected admission in standby, active, drill
MATRIX = {
    "admin": ((True, ()), (True, True, True)),
    "pilot member": ((False, (PILOT,)), (True, True, True)),
    "drill member": ((False, (DRILL,)), (False, True, True)),
    "plain member": ((False, ()), (False, True, False)),
    "member of another group": ((False, ("other",)), (False, True, False)),
}


@pytest.mark.parametrize("who", sorted(MATRIX))
def test_admission_for_every_mode_and_kind_of_user(who: str) -> None:
    """Standby: admins+pilot; active: everyone entitled; drill: admins+pilot+drill group."""
    (is_admin, groups), expected = MATRIX[who]
    states = [SwitchState(Mode.STANDBY, NOW, "p", "r"), SwitchState(Mode.ACTIVE, NOW, "p", "r"),
              SwitchState(Mode.DRILL, NOW, "p", "r", until=NOW + 60, group=DRILL)]
    got = tuple(admits(s, is_admin=is_admin, groups=groups, pilot_groups=[PILOT])
                for s in states)
    assert got == expected


def test_state_round_trips_through_json() -> None:
    """What the store keeps reads back equal, with the store's version."""
    s = SwitchState(Mode.DRILL, NOW, "p", "r", until=NOW + 5, group=DRILL, message="m")
    back = SwitchState.from_json(s.to_json(), 9)
    assert back == SwitchState(Mode.DRILL, NOW, "p", "r", NOW + 5, DRILL, "m", 9)


def test_times_relative_iso_and_local() -> None:
    """Durations count from now; ISO with offset is absolute; without, in the time zone."""
    assert parse_time("90m", NOW) == NOW + 5400
    assert parse_time("+2h", NOW) == NOW + 7200
    assert parse_time("1d", NOW) == NOW + 86400
    assert parse_time("2026-07-01T12:00:00Z", NOW) == 1782907200.0
    # London is on BST (UTC+1) in July.
    assert parse_time("2026-07-01T13:00", NOW, "Europe/London") == 1782907200.0
    with pytest.raises(BadRequest, match="not a time"):
        parse_time("next tuesday", NOW)
