"""The ICT subcommands of ``gateway``: the failover switch, the audit trail and API keys.

    gateway failover status [--json]
    gateway failover activate --reason R [--until T] [--message M]
    gateway failover standby  --reason R [--message M]
    gateway failover drill    --group G --until T --reason R [--message M]
    gateway failover timeline [--format csv|json]
    gateway audit verify
    gateway audit export [--since T] [--until T] [--format csv|json] [--output FILE]
    gateway apikey create NAME | list | revoke NAME

They work on the configured store directly (``gateway.cli.config``: no configuration, no
run; the store used is named on stderr; the running gateways see a change within
``failover.refresh_seconds``), with the same rules as the admin page and the API, and send
the same notifications, waiting for them at most ``CLI_NOTIFY_BUDGET`` seconds (two attempts,
five seconds each) and reporting each one. T is ISO 8601 (without an offset it is in
``general.timezone``) or a duration from now: ``90m``, ``2h``, ``1d``.
Exit status: 0 done, 1 refused or failed (the reason on stderr), 2 bad usage or no
configuration, 3 done but a notification failed or went unanswered (said on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.auth import apikeys
from gateway.cli import output
from gateway.cli.config import command_settings
from gateway.cli.output import Command, guarded, warning
from gateway.config import Settings
from gateway.errors import Conflict
from gateway.store.base import Store
from gateway.store.factory import build_store
from gateway.switch import controls, directory
from gateway.switch import seen as failover_seen
from gateway.switch.audit import AuditLog, iso
from gateway.switch.machine import AuditTrail, Flip, Mode, Switch, apply, local, parse_time
from gateway.switch.notify import Notifier, NotifyConfig

# The CLI tells people within the same run, briefly: a dead webhook must not hold the terminal
# for half a minute of retries, and a delivery that failed must not pass silently.
CLI_NOTIFY_ATTEMPTS = 2
CLI_NOTIFY_BACKOFF = 1.0
CLI_NOTIFY_TIMEOUT = 5.0
CLI_NOTIFY_BUDGET = 15.0
EXIT_NOT_NOTIFIED = 3


@dataclass
class Kit:
    settings: Settings
    store: Store
    audit: AuditLog
    switch: Switch
    notifier: Notifier
    clock: Callable[[], float]


def cli_notify_config(settings: Settings) -> NotifyConfig:
    """The notification settings, bounded for a command waiting at a terminal."""
    c = NotifyConfig.from_settings(settings)
    return replace(c, attempts=min(c.attempts, CLI_NOTIFY_ATTEMPTS),
                   backoff_seconds=min(c.backoff_seconds, CLI_NOTIFY_BACKOFF),
                   timeout_seconds=min(c.timeout_seconds, CLI_NOTIFY_TIMEOUT))


def _report_notifications(notifier: Notifier, unfinished: int) -> bool:
    """Say how each notification went; True if all that were sent were delivered."""
    ok = True
    for d in notifier.recent:
        print(f"notification to {d.target}: "
              f"{'delivered' if d.ok else 'FAILED: ' + d.detail}", file=sys.stderr)
        ok = ok and d.ok
    for target, detail, next_try in notifier.deferred:
        print(f"notification to {target}: FAILED: {detail}; kept in the store, the running "
              f"gateway retries it (next try {iso(next_try)})", file=sys.stderr)
        ok = False
    if unfinished:
        print(f"notification: {unfinished} not confirmed within {CLI_NOTIFY_BUDGET:.0f} s "
              "(no answer)", file=sys.stderr)
    if not ok or unfinished:
        warning("the change WAS made, but not everyone was told: tell the ICT channel "
                "yourself (exit status 3).")
    return ok and not unfinished


def _kit_run(args: argparse.Namespace, work: Callable[[Kit], Awaitable[int]]) -> int:
    settings = command_settings(args)
    clock = time.time

    async def run() -> int:
        store = build_store(settings, listen=False)
        await store.open()
        log = AuditLog(store, clock)
        # Kept in the store: what cannot be delivered now is retried by the running gateway.
        notifier = Notifier(cli_notify_config(settings), clock, store=store)
        switch = Switch(store, clock, initial_mode=Mode(settings.failover.initial_mode),
                        listeners=[AuditTrail(log), notifier])
        try:
            result = await work(Kit(settings, store, log, switch, notifier, clock))
        finally:
            await notifier.drain(CLI_NOTIFY_BUDGET)
            unfinished = notifier.pending
            await notifier.aclose(grace=0)
            await store.close()
        if not _report_notifications(notifier, unfinished) and result == 0:
            return EXIT_NOT_NOTIFIED
        return result

    return asyncio.run(run())


def _login() -> str:
    """The person at the terminal: under sudo, the one who ran sudo."""
    return f"cli:{os.environ.get('SUDO_USER') or getpass.getuser()}"


def _who(args: argparse.Namespace) -> str:
    return args.by or _login()


def _print_state(kit: Kit, state: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**state.public(), "store_ok": kit.switch.store_ok}, indent=1))
        return
    tz = kit.settings.general.timezone
    print(f"mode:    {state.mode}")
    print(f"since:   {local(state.since, tz) if state.since else 'first start'}")
    print(f"by:      {state.by}")
    print(f"reason:  {state.reason}")
    if state.until:
        print(f"until:   {local(state.until, tz)} ({iso(state.until)})")
    if state.group:
        print(f"group:   {state.group}")
    if state.message:
        print(f"message: {state.message}")
    print(f"version: {state.version}   (a change from here is refused if the switch moves on "
          "from this version)")


def cmd_status(args: argparse.Namespace) -> int:
    async def work(kit: Kit) -> int:
        state = await kit.switch.current()
        _print_state(kit, state, args.json)
        await failover_seen.remember(kit.store, _login(), state.version)
        return 0
    return _kit_run(args, work)


def cmd_flip(args: argparse.Namespace) -> int:
    async def work(kit: Kit) -> int:
        tz, now = kit.settings.general.timezone, kit.clock()
        until = parse_time(args.until, now, tz) if getattr(args, "until", None) else None
        # The version guard: the one given, else the one this person last saw (status or
        # their own last change); someone who never looked is not guarded.
        expected, seen = args.expect_version, None
        if expected is None:
            expected = seen = await failover_seen.last_seen(kit.store, _login())
        change = Flip(mode=args.mode, reason=args.reason, by=_who(args), until=until,
                      group=getattr(args, "group", None) or "", message=args.message or "",
                      expected_version=expected)
        try:
            apply(await kit.switch.current(), change, now)   # bad input first, cheaply
            group, unconfirmed = (await _checked_group(args.group, kit, args.force)
                                  if args.mode == Mode.DRILL else (None, ""))
            new = await kit.switch.flip(change)
        except Conflict:
            if seen is None:
                raise
            raise Conflict(failover_seen.stale_view(await kit.switch.current(), seen) +
                           " Look with `gateway failover status`, then run this again, or "
                           "pass --expect-version.") from None
        await failover_seen.remember(kit.store, _login(), new.version)
        if unconfirmed:
            await kit.audit.record("failover.drill.group_unconfirmed", new.by, group=new.group,
                                   problem=unconfirmed, version=new.version)
        _print_state(kit, new, False)
        if group is not None:
            print(f"members: {group}")
        return 0
    return _kit_run(args, work)


async def _checked_group(group: str, kit: Kit, force: bool) -> tuple[str, str]:
    """The drill group as the directory knows it (name, member count), and the problem when
    it could not be confirmed. A group that matches nobody, or one the directory cannot
    confirm, is refused unless ``force``."""
    try:
        return (await directory.lookup_group(kit.settings, group)).text(), ""
    except (directory.GroupNotFound, directory.GroupEmpty,
            directory.DirectoryUnavailable) as err:
        if not force:
            err.message += " Nothing was changed. To start the drill anyway, add --force."
            raise
        print(f"warning: drill group not confirmed: {err.message} Starting the drill anyway "
              "(--force); this is recorded in the audit trail.", file=sys.stderr)
        if isinstance(err, directory.GroupEmpty):
            return err.info.text(), err.message
        return "not confirmed by the directory (--force)", err.message


def cmd_timeline(args: argparse.Namespace) -> int:
    async def work(kit: Kit) -> int:
        done = await controls.export_incidents(kit.audit, args.format, kit.clock(),
                                               kit.settings.general.timezone)
        print(done.body, end="")
        return 0
    return _kit_run(args, work)


def cmd_verify(args: argparse.Namespace) -> int:
    from gateway.evidence.checkpoint import check_chain
    from gateway.evidence.signing import Signer, checkpoint_path, key_path, store_id

    async def work(kit: Kit) -> int:
        # The chain, and the signed daily checkpoints that catch a re-chained or cut one.
        signer = Signer.from_file(key_path(kit.settings))
        verdict = await check_chain(kit.store, signer, str(checkpoint_path(kit.settings)),
                                    store_id(kit.settings))
        return output.verdict(verdict.text(), verdict.ok)
    return _kit_run(args, work)


def cmd_export(args: argparse.Namespace) -> int:
    async def work(kit: Kit) -> int:
        tz, now = kit.settings.general.timezone, kit.clock()
        since = parse_time(args.since, now, tz) if args.since else None
        until = parse_time(args.until, now, tz) if args.until else None
        text = (await controls.export_audit(kit.audit, args.format, _who(args), since, until,
                                            must_record=True)).body
        if args.output:
            Path(args.output).write_text(text)
        else:
            print(text, end="")
        return 0
    return _kit_run(args, work)


def cmd_apikey(args: argparse.Namespace) -> int:
    async def work(kit: Kit) -> int:
        now = kit.clock()
        if args.apikey_command == "create":
            secret = await apikeys.create(kit.store, args.name, _who(args), now)
            await kit.audit.record("admin.apikey.created", _who(args), name=args.name)
            print(secret)
            print(f"API key {args.name!r} made. It is shown only now: keep it in your secret "
                  "store. Use it as: Authorization: Bearer <key>", file=sys.stderr)
            return 0
        if args.apikey_command == "revoke":
            if not await apikeys.revoke(kit.store, args.name, now):
                return output.error("apikey", f"no live key named {args.name!r}")
            await kit.audit.record("admin.apikey.revoked", _who(args), name=args.name)
            print(f"API key {args.name!r} revoked.")
            return 0
        for k in await kit.store.list_api_keys():
            state = f"revoked {iso(k.revoked_at)}" if k.revoked_at else "live"
            used = iso(k.last_used) if k.last_used else "never"
            print(f"{k.name}\t{state}\tmade {iso(k.created_at)} by {k.created_by}\t"
                  f"last used {used}")
        return 0
    return _kit_run(args, work)


def _refusing(fn: Command) -> Command:
    return guarded(fn, prefix="refused: ")


def register(sub: Any) -> None:
    """Add ``failover``, ``audit`` and ``apikey`` to the ``gateway`` command's subparsers."""
    fo = sub.add_parser("failover", help="the failover switch: status, activate, standby, drill")
    fo_sub = fo.add_subparsers(dest="failover_command", required=True)
    st = fo_sub.add_parser("status", help="show the switch")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=_refusing(cmd_status))
    for name, mode, text in (("activate", Mode.ACTIVE, "open the gateway to every member"),
                             ("standby", Mode.STANDBY, "back to admins and the pilot group"),
                             ("drill", Mode.DRILL, "a rehearsal for one group, until a time")):
        p = fo_sub.add_parser(name, help=text)
        p.add_argument("--reason", required=True, help="why (recorded and notified)")
        p.add_argument("--message", help="message to members on the status page")
        p.add_argument("--by", help="who is flipping (default cli:<login name>)")
        p.add_argument("--expect-version", type=int, default=None,
                       help="refuse if the switch is no longer at this version (default: the "
                            "version you last saw with `failover status`)")
        if mode is not Mode.STANDBY:
            p.add_argument("--until", required=mode is Mode.DRILL,
                           help="when it returns to standby: ISO time or 90m, 2h, 1d")
        if mode is Mode.DRILL:
            p.add_argument("--group", required=True,
                           help="Entra group object id taking part (looked up in the "
                                "directory: refused if nobody is in it)")
            p.add_argument("--force", action="store_true",
                           help="start even if the directory cannot confirm the group has "
                                "members (warned about and audited)")
        p.set_defaults(fn=_refusing(cmd_flip), mode=str(mode))
    tl = fo_sub.add_parser("timeline", help="the incident timeline (periods in active mode)")
    tl.add_argument("--format", choices=("csv", "json"), default="json")
    tl.set_defaults(fn=_refusing(cmd_timeline))

    au = sub.add_parser("audit", help="the audit trail: verify, export")
    au_sub = au.add_subparsers(dest="audit_command", required=True)
    au_sub.add_parser("verify", help="check the hash chain").set_defaults(
        fn=_refusing(cmd_verify))
    ex = au_sub.add_parser("export", help="export entries as CSV or JSON")
    ex.add_argument("--since", help="from this time (ISO 8601, e.g. 2026-03-01)")
    ex.add_argument("--until", help="up to this time (exclusive)")
    ex.add_argument("--format", choices=("csv", "json"), default="json")
    ex.add_argument("--output", help="write to this file instead of standard output")
    ex.add_argument("--by", help="who is exporting (default cli:<login name>)")
    ex.set_defaults(fn=_refusing(cmd_export))

    ak = sub.add_parser("apikey", help="bearer keys for the HTTP API")
    ak_sub = ak.add_subparsers(dest="apikey_command", required=True)
    mk = ak_sub.add_parser("create", help="make a key (printed once)")
    mk.add_argument("name")
    mk.add_argument("--by", help="who is making it (default cli:<login name>)")
    mk.set_defaults(fn=_refusing(cmd_apikey))
    ak_sub.add_parser("list", help="list keys (never their secrets)").set_defaults(
        fn=_refusing(cmd_apikey), by=None)
    rv = ak_sub.add_parser("revoke", help="revoke a key")
    rv.add_argument("name")
    rv.add_argument("--by", help="who is revoking it (default cli:<login name>)")
    rv.set_defaults(fn=_refusing(cmd_apikey))
