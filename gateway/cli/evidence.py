"""``gateway evidence``: the signed evidence report of a period, and its check.

    gateway evidence export [--since T] [--until T] --format html|json|csv --out FILE
    gateway evidence verify FILE [--public-key PEM] [--signature SIG]
    gateway evidence public-key            # the PEM ICT publishes for third parties

T is ISO 8601 (without an offset: in ``general.timezone``) or a span before now: ``1h``,
``7d``, ``2w``. ``export`` writes FILE and FILE.sig (raw Ed25519) and records the export in
the audit trail. ``verify`` exits 0 when the signature matches, 1 when it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from pathlib import Path
from typing import Any

from gateway.cli.config import command_settings
from gateway.cli.output import Command, guarded, verdict, warning
from gateway.evidence.export import make_report, parse_period, verify_file, write_signed
from gateway.evidence.render import FORMATS, render
from gateway.evidence.signing import Signer, key_path, load_public
from gateway.store.factory import build_store
from gateway.switch.audit import AuditLog


def cmd_export(args: argparse.Namespace) -> int:
    settings = command_settings(args)
    signer = Signer.from_file(key_path(settings))
    now = time.time()
    out = Path(args.out)

    async def run() -> int:
        since, until = parse_period(args.since, args.until, now,
                                    settings.general.timezone)
        store = build_store(settings, listen=False)
        await store.open()
        try:
            report = await make_report(settings, store, signer, since=since, until=until,
                                       now=now)
            data = render(report, args.format, name=out.name)
            sig = write_signed(out, data, signer)
            await AuditLog(store, time.time).record(
                "admin.evidence.exported", args.by or f"cli:{getpass.getuser()}",
                since=since, until=until, format=args.format, chain_ok=report.chain.ok)
        finally:
            await store.close()
        print(f"{out} written ({len(data)} bytes) and signed: {sig}")
        if not report.chain.ok:
            warning("the audit chain does NOT verify; the report says so in red: "
                    + "; ".join(report.chain.problems))
        return 0

    return asyncio.run(run())


def cmd_verify(args: argparse.Namespace) -> int:
    if args.public_key:
        public = load_public(Path(args.public_key).read_bytes())
    else:
        settings = command_settings(args)
        public = Signer.from_file(key_path(settings), create=False).public
    ok, why = verify_file(Path(args.file), public,
                          Path(args.signature) if args.signature else None)
    return verdict(why, ok)


def cmd_public_key(args: argparse.Namespace) -> int:
    settings = command_settings(args)
    signer = Signer.from_file(key_path(settings))
    print(signer.public_pem(), end="")
    print(f"SHA-256 (DER): {signer.fingerprint()}", file=sys.stderr)
    return 0


def _guard(fn: Command) -> Command:
    return guarded(fn, also=(OSError, ValueError))


def register(sub: Any) -> None:
    ev = sub.add_parser("evidence", help="the signed evidence report of a period")
    ev_sub = ev.add_subparsers(dest="evidence_command", required=True)
    ex = ev_sub.add_parser("export", help="write the report of a period, signed")
    ex.add_argument("--since", help="start: ISO 8601, or 1h, 7d ... before now (default 7d)")
    ex.add_argument("--until", help="end (exclusive; default now)")
    ex.add_argument("--format", choices=FORMATS, default="html")
    ex.add_argument("--out", required=True, help="file to write (FILE.sig beside it)")
    ex.add_argument("--by", help="who is exporting (default cli:<login name>)")
    ex.set_defaults(fn=_guard(cmd_export))
    vf = ev_sub.add_parser("verify", help="check a report's signature")
    vf.add_argument("file")
    vf.add_argument("--public-key", help="PEM public key (default: the configured key's)")
    vf.add_argument("--signature", help="signature file (default FILE.sig)")
    vf.set_defaults(fn=_guard(cmd_verify))
    ev_sub.add_parser("public-key", help="print the public key that verifies reports"
                      ).set_defaults(fn=_guard(cmd_public_key))
