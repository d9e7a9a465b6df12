"""Settings: one frozen object built from a TOML file plus ``GATEWAY_*`` environment variables.

Each setting is declared once in ``gateway.config.fields.FIELDS``; this module reads them.
Precedence, lowest first: built-in default, TOML file, environment.

- TOML: ``[section] key = value`` (e.g. ``[entra] client_id = "..."``).
- Environment: ``GATEWAY_<SECTION>_<KEY>`` in capitals (``GATEWAY_ENTRA_CLIENT_ID``).
- Secrets may come from a file: ``<key>_file`` in TOML or ``GATEWAY_<SECTION>_<KEY>_FILE``;
  the file's content, stripped of surrounding whitespace, is the value.

Errors are ``ConfigError``: the message names the key and says how to fix it.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.fields import ENV_PREFIX, FIELDS, ConfigError, Field
from gateway.config.sections import (
    SECTIONS,
    AccessSettings,
    CryptoSettings,
    EntraSettings,
    EvidenceSettings,
    FailoverSettings,
    GeneralSettings,
    GraphSettings,
    HealthSettings,
    ImapSettings,
    MailSettings,
    MetricsSettings,
    NotifySettings,
    PlatformSettings,
    ServerSettings,
    SessionSettings,
    SmtpSettings,
    StoreSettings,
    build,
)

_BY_KEY = {f.key: f for f in FIELDS}
_SECTIONS = sorted({f.section for f in FIELDS})


@dataclass(frozen=True)
class Settings:
    """The effective configuration, one typed section per table section
    (``settings.imap.host``); ``values`` keeps the flat ``section.name`` mapping for printing
    and copying."""

    values: Mapping[str, Any] = field(default_factory=dict)
    general: GeneralSettings = field(init=False, repr=False)
    server: ServerSettings = field(init=False, repr=False)
    entra: EntraSettings = field(init=False, repr=False)
    access: AccessSettings = field(init=False, repr=False)
    session: SessionSettings = field(init=False, repr=False)
    crypto: CryptoSettings = field(init=False, repr=False)
    store: StoreSettings = field(init=False, repr=False)
    imap: ImapSettings = field(init=False, repr=False)
    smtp: SmtpSettings = field(init=False, repr=False)
    health: HealthSettings = field(init=False, repr=False)
    platform: PlatformSettings = field(init=False, repr=False)
    evidence: EvidenceSettings = field(init=False, repr=False)
    metrics: MetricsSettings = field(init=False, repr=False)
    mail: MailSettings = field(init=False, repr=False)
    graph: GraphSettings = field(init=False, repr=False)
    failover: FailoverSettings = field(init=False, repr=False)
    notify: NotifySettings = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Built once per Settings (start-up, or a test's replace()), never per read.
        for section, cls in SECTIONS.items():
            object.__setattr__(self, section, build(cls, section, self.values))

    def value(self, key: str) -> object:
        """One setting by its ``section.name`` key, for the few readers whose key is data
        (the docs check, path settings in the CLI); code reads the typed sections."""
        if key not in _BY_KEY:
            raise ConfigError(f"unknown setting {key!r}")
        return self.values[key]

    # Typed shortcuts for what the code reads most.
    @property
    def production(self) -> bool:
        return bool(self.values["general.environment"] == "production")

    @property
    def public_url(self) -> str:
        return str(self.values["server.public_url"]).rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return self.public_url + "/auth/callback"

    @property
    def crypto_keys(self) -> list[bytes]:
        return [base64.b64decode(k) for k in self.values["crypto.keys"]]

    def redacted(self) -> dict[str, Any]:
        """The effective settings with every secret replaced, fit to print."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            v = self.values[f.key]
            if f.secret and v:
                v = "<redacted>" if not isinstance(v, list) else [f"<redacted {len(v)}>"]
            out[f.key] = v
        return out

    def to_toml(self) -> str:
        """The effective settings as a TOML file that load_settings reads back (secrets
        included: write it only where its mode keeps it private)."""
        def value(v: Any) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, (int, float)):
                return repr(v)
            if isinstance(v, list):
                return "[" + ", ".join(value(x) for x in v) + "]"
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines: list[str] = []
        for section in _SECTIONS:
            lines.append(f"[{section}]")
            lines += [f"{f.name} = {value(self.values[f.key])}" for f in FIELDS
                      if f.section == section]
            lines.append("")
        return "\n".join(lines)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``section__name=value`` changes (tests and the dev stack)."""
        values = dict(self.values)
        for k, v in changes.items():
            key = k.replace("__", ".", 1)
            if key not in _BY_KEY:
                raise ConfigError(f"unknown setting {key!r}")
            values[key] = _coerce(_BY_KEY[key], v, source="replace()")
        return _validated(values)


def _coerce(f: Field, raw: Any, source: str) -> Any:
    where = f"{f.key} (from {source})"
    try:
        if f.kind == "str":
            if not isinstance(raw, str):
                raise TypeError
            return raw
        if f.kind == "int":
            if isinstance(raw, bool):
                raise TypeError
            return int(raw)
        if f.kind == "float":
            if isinstance(raw, bool):
                raise TypeError
            return float(raw)
        if f.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false",
                                                         "no", "off"):
                return raw.lower() in ("1", "true", "yes", "on")
            raise TypeError
        if f.kind == "list":
            if isinstance(raw, str):
                return [p.strip() for p in raw.split(",") if p.strip()]
            if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                return list(raw)
            raise TypeError
    except (TypeError, ValueError):
        pass
    fix = {"list": "a list of strings (in the environment: comma-separated)",
           "int": "a whole number", "float": "a number", "bool": "true or false",
           "str": "a string"}[f.kind]
    raise ConfigError(f"{where}: expected {fix}, got {type(raw).__name__}. Set {f.key} to {fix}.")


def _read_secret_file(key: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {path!r} ({exc.strerror}). "
                          "Fix the path or the file's permissions.") from None


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the TOML file at ``path`` (or ``GATEWAY_CONFIG``), and
    the environment. Raises ConfigError naming the key on any problem."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {f.key: f.default for f in FIELDS}
    path = path or env.get("GATEWAY_CONFIG") or None
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"config file {str(path)!r}: {exc.strerror}. Check GATEWAY_CONFIG "
                              "or --config.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        for section, body in data.items():
            if not isinstance(body, dict) or section not in _SECTIONS:
                raise ConfigError(f"[{section}] in {path}: unknown section. Known sections: "
                                  f"{', '.join(_SECTIONS)}.")
            for name, raw in body.items():
                is_file = name.endswith("_file") and f"{section}.{name[:-5]}" in _BY_KEY \
                    and _BY_KEY[f"{section}.{name[:-5]}"].secret
                key = f"{section}.{name[:-5]}" if is_file else f"{section}.{name}"
                if key not in _BY_KEY:
                    raise ConfigError(f"{section}.{name} in {path}: unknown setting. See "
                                      "docs/configuration.md for the settings there are.")
                if is_file:
                    raw = _read_secret_file(key, str(raw))
                values[key] = _coerce(_BY_KEY[key], raw, source=str(path))
    known_env = {f.env: f for f in FIELDS}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == "GATEWAY_CONFIG":
            continue
        if name in known_env:
            values[known_env[name].key] = _coerce(known_env[name], raw, source=name)
        elif name.endswith("_FILE") and name[:-5] in known_env and known_env[name[:-5]].secret:
            f = known_env[name[:-5]]
            values[f.key] = _coerce(f, _read_secret_file(f.key, raw), source=name)
    return _validated(values)


def _validated(values: dict[str, Any]) -> Settings:
    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{key}: {msg}")

    if values["general.environment"] not in ("development", "production"):
        raise bad("general.environment", "must be `development` or `production`.")
    if values["general.log_level"] not in ("debug", "info", "warning", "error"):
        raise bad("general.log_level", "must be debug, info, warning or error.")
    try:
        import zoneinfo
        zoneinfo.ZoneInfo(values["general.timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise bad("general.timezone", "unknown time zone; use an IANA name such as "
                  "Europe/London.") from None
    if not 0 < values["server.port"] < 65536:
        raise bad("server.port", "must be between 1 and 65535.")
    pub = values["server.public_url"]
    if not pub.startswith("https://"):
        raise bad("server.public_url", "must start with https:// (members' sessions use "
                  "Secure cookies).")
    if bool(values["server.tls_cert"]) != bool(values["server.tls_key"]):
        raise bad("server.tls_key" if values["server.tls_cert"] else "server.tls_cert",
                  "tls_cert and tls_key must be set together.")
    for net in values["server.trusted_proxies"]:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise bad("server.trusted_proxies", f"{net!r} is not an address or network.") from None
    if not 1 <= values["server.workers"] <= 64:
        raise bad("server.workers", "must be between 1 and 64.")
    if values["server.max_body_bytes"] < 1024:
        raise bad("server.max_body_bytes", "must be at least 1024.")
    for key in ("server.header_timeout_seconds", "server.body_timeout_seconds",
                "server.keepalive_seconds"):
        if values[key] <= 0:
            raise bad(key, "must be a positive number of seconds.")
    if values["server.max_header_bytes"] < 4096:
        raise bad("server.max_header_bytes", "must be at least 4096 (browsers send cookies "
                  "and long URLs).")
    if values["server.max_requests_per_connection"] < 1:
        raise bad("server.max_requests_per_connection", "must be at least 1.")
    for key in ("access.api_refusals_per_minute", "access.signin_starts_per_address",
                "access.signin_starts_total"):
        if values[key] < 1:
            raise bad(key, "must be at least 1.")
    auth = values["entra.authority"]
    if auth and not auth.startswith("https://"):
        raise bad("entra.authority", "must start with https:// (msal refuses anything else).")
    if values["session.idle_minutes"] < 1 or values["session.absolute_hours"] < 1:
        raise bad("session.idle_minutes", "session lifetimes must be positive.")
    for i, k in enumerate(values["crypto.keys"]):
        try:
            raw = base64.b64decode(k, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise bad("crypto.keys", f"key number {i + 1} is not 32 bytes of base64. Make one "
                      "with `gateway keygen`.")
    if not 1 <= values["graph.page_size"] <= 1000:
        raise bad("graph.page_size", "must be between 1 and 1000 (Graph's largest page).")
    if values["graph.timeout_seconds"] <= 0 or values["graph.retry_after_max_seconds"] < 0:
        raise bad("graph.timeout_seconds", "timeouts must be positive and the Retry-After "
                  "bound (graph.retry_after_max_seconds) not negative.")
    if values["store.backend"] not in ("sqlite", "postgres"):
        raise bad("store.backend", "must be sqlite or postgres.")
    if values["store.backend"] == "postgres" and not values["store.postgres_dsn"]:
        raise bad("store.postgres_dsn", "required when store.backend = postgres.")
    if values["store.postgres_timeout_seconds"] <= 0 or values["store.postgres_pool_size"] < 1:
        raise bad("store.postgres_timeout_seconds", "postgres_timeout_seconds must be positive "
                  "and postgres_pool_size at least 1.")
    if values["health.access"] not in ("open", "token", "network"):
        raise bad("health.access", "must be open, token or network.")
    if values["health.access"] == "token" and len(values["health.token"]) < 16:
        raise bad("health.token", "required (16 characters or more) when health.access = token.")
    for net in values["health.allow"]:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise bad("health.allow", f"{net!r} is not an address or network.") from None
    if values["health.interval_seconds"] <= 0 or values["health.timeout_seconds"] <= 0:
        raise bad("health.interval_seconds", "interval_seconds and timeout_seconds must be "
                  "positive.")
    if values["health.mailflow_warn_seconds"] > values["health.mailflow_fail_seconds"]:
        raise bad("health.mailflow_warn_seconds", "must not exceed mailflow_fail_seconds.")
    if not 0 <= values["metrics.port"] < 65536:
        raise bad("metrics.port", "must be between 0 and 65535.")
    for net in values["metrics.allow"]:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise bad("metrics.allow", f"{net!r} is not an address or network.") from None
    if values["mail.sent_copy"] not in ("server", "gateway"):
        raise bad("mail.sent_copy", "must be server (Exchange Online saves the copy) or "
                  "gateway.")
    if values["failover.initial_mode"] not in ("standby", "active"):
        raise bad("failover.initial_mode", "must be standby or active (a drill needs an end "
                  "time; start one with `gateway failover drill`).")
    if values["failover.reauth_minutes"] < 1 or values["failover.refresh_seconds"] <= 0:
        raise bad("failover.reauth_minutes", "reauth_minutes and refresh_seconds must be "
                  "positive.")
    for url in values["notify.webhooks"]:
        if not url.startswith(("https://", "http://")):
            raise bad("notify.webhooks", "each webhook must be an http(s):// URL.")
    if values["notify.email_to"] and not values["notify.smtp_host"]:
        raise bad("notify.smtp_host", "required when notify.email_to is set.")
    if values["health.history_days"] < 1 or values["health.history_raw_days"] < 1:
        raise bad("health.history_days", "history_days and history_raw_days must be at "
                  "least 1.")
    from gateway.health.platform import parse_checks
    try:
        parse_checks(values["platform.checks"])
    except ValueError as exc:
        raise bad("platform.checks", str(exc)) from None
    if values["notify.attempts"] < 1:
        raise bad("notify.attempts", "must be at least 1.")
    if values["general.environment"] == "production":
        for key in ("entra.authority", "entra.client_id", "entra.client_secret"):
            if not values[key]:
                raise bad(key, "required in production.")
        if not values["crypto.keys"]:
            raise bad("crypto.keys", "required in production (make one with `gateway keygen`).")
    return Settings(values=values)
