"""The ``gateway`` command: serve | check-config | certs dev | keygen | demo | migrate, plus the
subcommands other modules register (probe, failover, audit, apikey, ...).

Every command reads the same settings (``--config FILE`` or ``GATEWAY_CONFIG``, ``--env-file
FILE``, plus ``GATEWAY_*`` variables; see ``gateway.cli.config``). A command that touches the
store refuses to run (exit 2) when no configuration is named. A bad setting exits 1 with a
message naming the key and the fix.

To add a command: a module with ``register(subparsers)`` that sets ``fn=`` on its parser, added
to ``REGISTRARS``; it gets ``--config``/``--env-file`` by itself, and reads its settings with
``gateway.cli.config.command_settings(args)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from gateway import __version__
from gateway.cli.config import (
    EXIT_NO_CONFIG,
    NoConfiguration,
    add_source_options,
    add_source_options_everywhere,
    command_settings,
    describe_store,
    export_env_file,
    settings_and_source,
)
from gateway.cli.deploy import register as register_deploy
from gateway.cli.evidence import register as register_evidence
from gateway.cli.failover import register as register_failover
from gateway.cli.health import register as register_probe
from gateway.cli.output import error, warning
from gateway.cli.tenant import register as register_tenant
from gateway.config import ConfigError

# Modules that add subcommands: each has ``register(subparsers)``.
REGISTRARS = (register_probe, register_failover, register_deploy, register_evidence,
              register_tenant)


def _setup_logging(level: str) -> None:
    # Structured JSON lines with a request id; tokens and cookies redacted (gateway.logging).
    from gateway.logging import setup_logging

    setup_logging(level)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings, source = settings_and_source(args)
    print(json.dumps(settings.redacted(), indent=2, sort_keys=True))
    print(f"store: {describe_store(settings)} (settings from "
          f"{source or 'built-in defaults: no --config, --env-file or GATEWAY_STORE_*'})",
          file=sys.stderr)
    if not source:
        warning("no configuration named, so these are not the live gateway's settings "
                "(give --env-file /etc/gateway/gateway.env or --config FILE)")
    problems = []
    for key, path in (("server.tls_cert", settings.server.tls_cert),
                      ("server.tls_key", settings.server.tls_key),
                      ("entra.ca_file", settings.entra.ca_file),
                      ("imap.ca_file", settings.imap.ca_file)):
        if path and not Path(path).is_file():
            problems.append(f"{key}: file {path!r} does not exist. Fix the path.")
    from gateway.server.tls import check_certificate

    cert_problems, warnings = check_certificate(settings.server.tls_cert,
                                                settings.server.tls_key)
    problems += cert_problems
    for w in warnings:
        warning(w)
    if settings.store.backend == "sqlite":
        from gateway.store.sqlite import path_problem

        store_problem = path_problem(settings.store.sqlite_path)
        if store_problem:
            problems.append(store_problem)
    if not settings.entra.authority:
        problems.append("entra.authority: not set; members cannot sign in. Set it to "
                        "https://login.microsoftonline.com/<tenant-id>.")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    settings = command_settings(args)
    if settings.store.backend == "sqlite":
        from gateway.store.sqlite import path_problem

        # Say so in one line now, not in a start-up traceback from every worker.
        store_problem = path_problem(settings.store.sqlite_path)
        if store_problem:
            raise ConfigError(store_problem)
    _setup_logging(settings.general.log_level)
    cert, key = settings.server.tls_cert, settings.server.tls_key
    from gateway.server.limits import uvicorn_options
    from gateway.server.tls import serve, server_context

    workers = settings.server.workers
    if workers > 1:
        # Each worker builds its own app (store connection, probe loop, IMAP pool) from the
        # same settings; uvicorn supervises them and restarts them all on SIGHUP.
        if args.config:
            os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
        export_env_file(args)
        uvicorn.run(
            "gateway.app:from_environment", factory=True, workers=workers,
            host=settings.server.host, port=settings.server.port,
            ssl_certfile=cert or None, ssl_keyfile=key or None,
            ssl_context_factory=server_context if cert else None,
            # server.trusted_proxies is applied by the app (gateway.logging).
            proxy_headers=False,
            server_header=False, access_log=False, timeout_graceful_shutdown=10,
            log_level=settings.general.log_level, log_config=None,
            **uvicorn_options(settings))
        return 0
    serve(uvicorn.Config(
        create_app(settings, freeze_heap=True), host=settings.server.host,
        port=settings.server.port,
        ssl_certfile=cert or None, ssl_keyfile=key or None,
        # Mozilla's intermediate TLS profile (gateway.server.tls.server_context).
        ssl_context_factory=server_context if cert else None,
        # Forwarded headers are believed only from server.trusted_proxies, by the app itself
        # (gateway.logging), which must see the real peer first.
        proxy_headers=False,
        server_header=False, access_log=False, log_level=settings.general.log_level,
        # Open new-mail streams never finish by themselves: give them a bound at shutdown
        # (browsers reconnect on their own).
        timeout_graceful_shutdown=10, log_config=None, **uvicorn_options(settings)))
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from gateway.server.certs import make_dev_certs

    out = make_dev_certs(Path(args.dir), hostnames=tuple(args.hostname or ["localhost"]),
                         reuse=not args.force)
    print(f"CA certificate:     {out.ca_cert}\nServer certificate: {out.server_cert}\n"
          f"Server key:         {out.server_key} (mode 0600; never commit it)")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from gateway.crypto import new_key

    print(new_key())
    return 0


async def _run_demo(workdir: Path, port: int, exchange: bool) -> None:
    from gateway.app import create_app
    from gateway.devstack.platform import PlatformStandIn
    from gateway.devstack.runner import TLSServer
    from gateway.devstack.stack import DevStack
    from gateway.devstack.users import DRILL_GROUP, USERS, user

    canary = user("canary").email
    # Exchange Online's IMAP personality unless --permissive (gateway.devstack.exchange_imap).
    stack = DevStack(workdir, exchange_capabilities=exchange, exchange_proxy=exchange,
                     app_mailboxes=(canary,))
    imap_kind = ("Exchange Online's IMAP personality; --permissive for plain Dovecot"
                 if exchange else "plain Dovecot, permissive")
    print(f"Starting the dev stack (Entra ID stand-in, Dovecot as {imap_kind}, SMTP) ...",
          flush=True)
    await stack.start()
    server = None
    assert stack.certs is not None
    platform = PlatformStandIn(stack.certs)
    await platform.start()
    try:
        # The demo opens with the standby route switched on, so the sample member reaches
        # their mailbox at once; the ICT sample user can switch it off and on again. The
        # canary runs app-only against the canary mailbox, a stand-in of the supplier's
        # platform is watched, and probes run every 5 s so a fault shows at once.
        settings = stack.gateway_settings(
            port, failover__initial_mode="active", health__canary_mailbox=canary,
            health__mailflow_interval_seconds=30.0, health__interval_seconds=5.0,
            health__alert_after_seconds=30.0, health__recover_after_seconds=30.0,
            platform__checks=platform.checks(), platform__interval_seconds=15.0,
            platform__ca_file=str(stack.certs.ca_cert))
        assert stack.certs is not None
        from gateway.server.limits import uvicorn_options

        # The same HTTP protocol and connection limits as `gateway serve`.
        server = TLSServer(create_app(settings), stack.certs, port=port, log_level="info",
                           **uvicorn_options(settings))
        await server.start()
        print(f"\nThe gateway is running: {settings.public_url}/\n"
              f"Its certificate is signed by the dev CA at {stack.certs.ca_cert}\n"
              "(trust that CA, or accept the browser's warning for this demo).\n\n"
              "Sample sign-ins (pick one on the stand-in's sign-in page; no password):")
        for u in USERS:
            roles = ", ".join(u.roles) or "no role: will be refused"
            print(f"  {u.name:<22} {u.email:<34} {roles}")
        # The demo's settings as a file, so that the other commands reach this stack (its
        # store, its initial mode, its Entra and Graph stand-ins) and not a default one.
        conf = workdir / "demo.toml"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(settings.to_toml())
        # The mode as the running gateway sees it, not as the demo meant to set it.
        state = await server.app.state.gateway.services.failover.current()
        gw = f"gateway --config {conf}"
        print(f"\nThe failover switch is '{state.mode}' (version {state.version}). ICT can flip "
              f"it at {settings.public_url}/admin (as Priya Shah), or from another terminal:\n"
              f"  {gw} failover status\n"
              f"  {gw} failover standby --reason 'Mobile platform back'\n"
              f"  {gw} failover activate --reason 'Mobile platform down'\n"
              f"  {gw} failover drill --group {DRILL_GROUP} --until 1h "
              f"--reason 'Rehearsal'\n"
              f"Public status: {settings.public_url}/status   "
              f"Health: {settings.public_url}/health\n"
              f"Monitoring check: {gw} probe\n"
              f"Evidence report:  {gw} evidence export --since 1h --format html --out r.html"
              f"\n                  {gw} evidence verify r.html")
        print("\nPress Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("\nStopping ...", flush=True)
    finally:
        if server is not None:
            await server.stop()
        await platform.stop()
        await stack.stop()


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo embeds its own settings; a configuration given is read only to refuse
    # production.
    settings = command_settings(args, needs_store=False)
    if settings.production:
        print("gateway demo: refusing to run: general.environment is production. The demo "
              "starts stand-ins for Entra ID and sample mailboxes; run it on a dev machine.",
              file=sys.stderr)
        return 1
    _setup_logging("warning")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    # Dovecot runs as an unprivileged user and must be able to reach its files in here.
    workdir.chmod(0o711)
    try:
        asyncio.run(_run_demo(workdir, args.port, not args.permissive))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("Stopped; nothing left running.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway", description="Failover mail gateway")
    p.add_argument("--version", action="version", version=f"gateway {__version__}")
    add_source_options(p, top=True)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gateway").set_defaults(fn=cmd_serve)
    sub.add_parser("check-config", help="validate and print the effective settings"
                   ).set_defaults(fn=cmd_check_config)
    certs = sub.add_parser("certs", help="development certificates")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    dev = certs_sub.add_parser("dev", help="make a dev CA and a localhost certificate")
    dev.add_argument("--dir", default="certs")
    dev.add_argument("--hostname", action="append")
    dev.add_argument("--force", action="store_true", help="replace existing certificates")
    dev.set_defaults(fn=cmd_certs)
    sub.add_parser("keygen", help="print a new crypto.keys entry").set_defaults(fn=cmd_keygen)
    for register in REGISTRARS:
        register(sub)
    demo = sub.add_parser("demo", help="run the gateway against the dev stack")
    demo.add_argument("--port", type=int, default=8443)
    demo.add_argument("--permissive", action="store_true",
                      help="plain Dovecot instead of the Exchange Online personality")
    demo.add_argument("--exchange", action="store_true",
                      help="the Exchange Online personality (the default; kept for old scripts)")
    demo.set_defaults(fn=cmd_demo)
    add_source_options_everywhere(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except NoConfiguration as exc:
        error(args.command, str(exc))
        return EXIT_NO_CONFIG
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
