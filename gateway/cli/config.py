"""Which settings a ``gateway`` command runs with, and the rule that a command touching state
never runs on a guessed store.

A command that reads or changes the store (``serve``, ``failover``, ``audit``, ``apikey``,
``migrate``, ``probe``, ...) needs its configuration named, in one of these ways:

- ``--config FILE`` (a TOML file) or ``GATEWAY_CONFIG=FILE``;
- ``--env-file FILE``: ``GATEWAY_*`` assignments in the format of systemd's
  ``EnvironmentFile=`` (``/etc/gateway/gateway.env`` in the deploy kit), read exactly as systemd
  reads it; variables set in the calling environment take precedence over the file's;
- or an environment that itself names the store (``GATEWAY_STORE_BACKEND``,
  ``GATEWAY_STORE_SQLITE_PATH``, ``GATEWAY_STORE_POSTGRES_DSN[_FILE]``): that is how systemd,
  compose and Kubernetes hand the settings to ``gateway serve`` and to ``kubectl exec ...``.

Without any of them such a command exits 2 and writes nothing: the built-in default store
(``var/gateway.db`` under the current directory) is never what an operator meant. Every such
command says on stderr which store it uses (the SQLite path, or the DSN without password).
``demo``, ``certs dev``, ``keygen`` and ``check-config`` need no configuration.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gateway.cli.output import warning
from gateway.config import ENV_PREFIX, FIELDS, ConfigError, Settings, load_settings

EXIT_NO_CONFIG = 2
STORE_VARIABLES = ("GATEWAY_STORE_BACKEND", "GATEWAY_STORE_SQLITE_PATH",
                   "GATEWAY_STORE_POSTGRES_DSN", "GATEWAY_STORE_POSTGRES_DSN_FILE")
_KNOWN = {f.env for f in FIELDS} | {f.env + "_FILE" for f in FIELDS if f.secret} | {
    "GATEWAY_CONFIG"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

NO_CONFIG = (
    "no configuration given, so this command would act on a default store that is probably "
    "not the live one; nothing was done. Name the settings the running gateway uses:\n"
    "  gateway --env-file /etc/gateway/gateway.env ...   (systemd EnvironmentFile format)\n"
    "  gateway --config /etc/gateway/gateway.toml ...    (or GATEWAY_CONFIG=FILE)\n"
    "  or set GATEWAY_STORE_* in the environment (as in a container).")


class NoConfiguration(Exception):
    """A command that touches state was given no configuration."""


def add_source_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--config`` and ``--env-file``, accepted before or after the subcommand. On
    subcommands they default to SUPPRESS so they do not erase a value given before it."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="TOML settings file (default: $GATEWAY_CONFIG)")
    parser.add_argument("--env-file", metavar="FILE", default=default, dest="env_file",
                        help="GATEWAY_* settings in systemd EnvironmentFile format, e.g. "
                             "/etc/gateway/gateway.env")


def add_source_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand (at any depth) the source options, so commands registered by
    any module accept ``gateway failover status --env-file F`` as well as the form with the
    options first."""
    for action in parser._actions:  # argparse keeps no public list of subparsers
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if not any("--config" in a.option_strings for a in child._actions):
                    add_source_options(child)
                add_source_options_everywhere(child)


# -- systemd EnvironmentFile= format (systemd.exec(5); src/basic/env-file.c)

def parse_env_file(text: str, source: str = "env file") -> tuple[dict[str, str], list[str]]:
    """The assignments in ``text`` as systemd reads an EnvironmentFile, and warnings for the
    lines systemd would ignore. Empty lines and lines starting with ``#`` or ``;`` are
    comments; leading and trailing blanks are dropped; ``\\`` at the end of a line continues
    it; an unquoted backslash keeps the next character; single quotes keep everything
    verbatim; double quotes know ``\\"`` ``\\\\`` ``\\``` ``\\$`` and line continuation. No
    ``$VAR`` expansion (systemd does none in an EnvironmentFile)."""
    out: dict[str, str] = {}
    warnings: list[str] = []
    key: list[str] = []
    value: list[str] = []
    keep = 0          # length of value up to its last character that is not trailing blank
    state = "pre_key"
    line = 1
    blank = " \t\r"

    def push() -> None:
        name = "".join(key).rstrip(blank)
        if _NAME.match(name):
            out[name] = "".join(value)
        else:
            warnings.append(f"{source}:{line}: invalid variable name {name!r}, ignored "
                            "(as systemd does)")

    for c in text:
        if state == "pre_key":
            if c in "#;":
                state = "comment"
            elif c not in blank + "\n":
                state, key, value, keep = "key", [c], [], 0
        elif state == "key":
            if c == "\n":
                warnings.append(f"{source}:{line}: no '=' in this line, ignored "
                                "(as systemd does)")
                state = "pre_key"
            elif c == "=":
                state = "pre_value"
            else:
                key.append(c)
        elif state == "pre_value":
            if c == "\n":
                push()
                state = "pre_key"
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "escape"
            elif c not in blank:
                value.append(c)
                keep, state = len(value), "value"
        elif state == "value":
            if c == "\n":
                del value[keep:]
                push()
                state = "pre_key"
            elif c == "\\":
                state = "escape"
            else:
                value.append(c)
                if c not in blank:
                    keep = len(value)
        elif state == "escape":
            state = "value"
            if c != "\n":
                value.append(c)
                keep = len(value)
        elif state == "single":
            if c == "'":
                keep, state = len(value), "pre_value"
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                keep, state = len(value), "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            state = "double"
            if c in '"\\`$':
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c == "\n":
                state = "pre_key"
        elif state == "comment_escape":
            # systemd 252 (Debian 12): a comment ending in a backslash swallows the next line.
            state = "comment"
        if c == "\n":
            line += 1
    if state in ("value", "escape"):
        del value[keep:]
        push()
    elif state in ("pre_value", "single", "double", "double_escape"):
        push()
    elif state == "key":
        warnings.append(f"{source}:{line}: no '=' in this line, ignored (as systemd does)")
    return out, warnings


def read_env_file(path: str) -> tuple[dict[str, str], list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"env file {path!r}: {exc.strerror}. Check --env-file.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"env file {path!r} is not UTF-8 text.") from None
    values, warnings = parse_env_file(text, path)
    for name in values:
        if name.startswith(ENV_PREFIX) and name not in _KNOWN:
            warnings.append(f"{path}: {name} is not a gateway setting (a typo?); see "
                            "docs/configuration.md")
    return values, warnings


# -- choosing and announcing the configuration

def _environ(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The environment the settings are read from, and where the file part came from."""
    env_file = getattr(args, "env_file", None)
    merged = dict(env)
    source = ""
    if env_file:
        values, warnings = read_env_file(env_file)
        for w in warnings:
            warning(w)
        for name, value in values.items():
            if name in env and env[name] != value and name.startswith(ENV_PREFIX):
                print(f"note: {name} from the environment overrides {env_file}",
                      file=sys.stderr)
        merged = {**values, **env}
        source = f"env file {env_file}"
    config = getattr(args, "config", None) or merged.get("GATEWAY_CONFIG")
    if config:
        source = f"config {config}" + (f" + {source}" if source else "")
    elif not source and any(merged.get(v) for v in STORE_VARIABLES):
        source = "environment (" + ", ".join(v for v in STORE_VARIABLES if merged.get(v)) + ")"
    return merged, source


def describe_store(settings: Settings) -> str:
    """The store in words fit for a terminal: never a password."""
    if settings.store.backend == "postgres":
        return "PostgreSQL " + redact_dsn(str(settings.store.postgres_dsn))
    return "SQLite " + os.path.abspath(str(settings.store.sqlite_path))


def redact_dsn(dsn: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; a key=value
    DSN loses its password= value."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            cred, _, host = netloc.rpartition("@")
            user = cred.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in cred else f"{user}@{host}"
        query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return re.sub(r"(?i)(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)


def settings_and_source(args: argparse.Namespace,
                        environ: Mapping[str, str] | None = None) -> tuple[Settings, str]:
    """The settings, and where they were named ("" when nothing named them)."""
    merged, source = _environ(args, os.environ if environ is None else environ)
    return load_settings(getattr(args, "config", None) or None, environ=merged), source


def command_settings(args: argparse.Namespace, *, needs_store: bool = True,
                     environ: Mapping[str, str] | None = None,
                     announce: bool = True) -> Settings:
    """The settings for this command. With ``needs_store``, refuses (``NoConfiguration``)
    when nothing names the configuration, and says on stderr which store is used."""
    # Bad settings are reported first (naming the key), then a missing configuration.
    settings, source = settings_and_source(args, environ)
    if needs_store and not source:
        raise NoConfiguration(NO_CONFIG)
    if needs_store and announce:
        print(f"gateway: store: {describe_store(settings)} (settings from {source})",
              file=sys.stderr)
    return settings


def export_env_file(args: argparse.Namespace) -> None:
    """Put the ``--env-file`` assignments into this process's environment (the calling
    environment still wins), for worker processes that read their settings from it."""
    env_file = getattr(args, "env_file", None)
    if env_file:
        values, _ = read_env_file(env_file)
        for name, value in values.items():
            os.environ.setdefault(name, value)
