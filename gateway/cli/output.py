"""How the ``gateway`` subcommands speak: results on stdout; a refusal or failure as one line
``gateway <command>: <why>`` on stderr with exit status 1; warnings as ``warning: ...`` on
stderr; a check's verdict on stdout when it holds and on stderr (exit 1) when it does not.
Nagios-plugin output (``gateway probe``, ``check-tenant``) follows its own convention in
``gateway.cli.health``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from gateway.errors import GatewayError

Command = Callable[[argparse.Namespace], int]


def error(command: str, why: str) -> int:
    """Say on stderr why ``gateway <command>`` did not do it; the exit status 1."""
    print(f"gateway {command}: {why}", file=sys.stderr)
    return 1


def warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def verdict(text: str, ok: bool) -> int:
    """A check's outcome: on stdout and exit 0 when it holds, on stderr and 1 when not."""
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def guarded(fn: Command, *, prefix: str = "",
            also: tuple[type[Exception], ...] = ()) -> Command:
    """The command ``fn`` with a GatewayError (and the exceptions in ``also``) said as one
    ``error`` line, ``prefix`` before a GatewayError's message, instead of a traceback."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except GatewayError as err:
            return error(args.command, prefix + err.message)
        except also as exc:
            return error(args.command, str(exc))
    return run
