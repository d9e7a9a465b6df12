"""``gateway probe``: the health checks run once, for cron and Nagios-style monitors.

Prints one line (status, what is not passing, then Nagios performance data after ``|``) and
exits with the plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the checks could not
be run at all: bad settings, an internal error)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.cli.config import NoConfiguration, command_settings
from gateway.config import ConfigError, Settings
from gateway.health.monitor import CheckResult

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_CODES = {"pass": OK, "warn": WARNING, "fail": CRITICAL}
_WORDS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def _perfdata(results: dict[str, CheckResult]) -> str:
    parts = []
    for key, r in results.items():
        if isinstance(r.observed_value, (int, float)):
            unit = r.observed_unit if r.observed_unit in ("ms", "s") else ""
            parts.append(f"{key.replace(':', '_')}={r.observed_value}{unit}")
    return " ".join(parts)


def summary(results: dict[str, CheckResult]) -> tuple[int, str]:
    """The exit code and the one line for these results."""
    # The supplier's platform checks are shown but do not make the gateway itself unhealthy.
    code = max((_CODES[r.status] for r in results.values() if not r.informational),
               default=UNKNOWN)
    bad = [f"{k} {r.status}" + (f" ({r.output})" if r.output else "")
           for k, r in results.items() if r.status != "pass"]
    text = "; ".join(bad) if bad else f"{len(results)} checks pass"
    return code, f"HEALTH {_WORDS[code]} - {text} | {_perfdata(results)}".rstrip(" |")


async def run_checks(settings: Settings) -> dict[str, CheckResult]:
    from gateway.health.probes import running_monitor
    from gateway.store.factory import build_store

    store = build_store(settings, listen=False)
    await store.open()
    try:
        async with running_monitor(settings, store, start=False) as monitor:
            await monitor.run_once()
            return monitor.results()
    finally:
        await store.close()


def run_plugin(label: str, settings_for: Callable[[], Settings],
               check: Callable[[Settings], Coroutine[Any, Any, tuple[int, str]]]) -> int:
    """Run one Nagios-style check (``probe``, ``check-tenant``): print its one line and return
    its exit code. A missing or broken configuration, or checks that cannot run at all, are
    UNKNOWN, not CRITICAL: the plugin convention for "the check could not run"."""
    try:
        settings = settings_for()
    except NoConfiguration:
        print(f"{label} UNKNOWN - no configuration: give --env-file or --config (or "
              "GATEWAY_CONFIG, or GATEWAY_STORE_* variables) naming the gateway's settings")
        return UNKNOWN
    except ConfigError as exc:
        print(f"{label} UNKNOWN - configuration error: {exc}")
        return UNKNOWN
    try:
        code, text = asyncio.run(check(settings))
    except Exception as exc:  # noqa: BLE001 - any failure to run the checks is UNKNOWN
        print(f"{label} UNKNOWN - the checks could not run: {type(exc).__name__}")
        return UNKNOWN
    print(text)
    sys.stdout.flush()
    return code


def cmd_probe(args: argparse.Namespace) -> int:
    def settings_for() -> Settings:
        settings = command_settings(args)
        if args.timeout is not None:
            settings = settings.replace(health__timeout_seconds=args.timeout)
        return settings

    async def check(settings: Settings) -> tuple[int, str]:
        return summary(await run_checks(settings))

    return run_plugin("HEALTH", settings_for, check)


def register(subparsers: Any) -> None:
    """Add ``probe`` to the ``gateway`` command's subparsers."""
    p = subparsers.add_parser("probe", help="run the health checks once (Nagios exit codes)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per check (default: health.timeout_seconds)")
    p.set_defaults(fn=cmd_probe)
