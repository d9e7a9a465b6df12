"""One typed, frozen dataclass per settings section (``settings.imap.host``), so mypy sees the
type of every setting the code reads. The table in ``gateway.config.fields`` is the source:
``check_sections`` (run when the package is imported) refuses a section class whose fields
differ from the table in name or type, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from gateway.config.fields import FIELDS


@dataclass(frozen=True)
class GeneralSettings:
    environment: str
    log_level: str
    timezone: str


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    public_url: str
    tls_cert: str
    tls_key: str
    trusted_proxies: list[str]
    workers: int
    max_body_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_header_bytes: int
    max_requests_per_connection: int
    keepalive_seconds: float


@dataclass(frozen=True)
class EntraSettings:
    authority: str
    client_id: str
    client_secret: str
    ca_file: str
    imap_scope: str
    smtp_scope: str
    graph_scope: str
    post_logout_url: str


@dataclass(frozen=True)
class AccessSettings:
    member_roles: list[str]
    admin_roles: list[str]
    member_groups: list[str]
    admin_groups: list[str]
    api_refusals_per_minute: int
    signin_starts_per_address: int
    signin_starts_total: int


@dataclass(frozen=True)
class SessionSettings:
    idle_minutes: int
    absolute_hours: int


@dataclass(frozen=True)
class CryptoSettings:
    keys: list[str]


@dataclass(frozen=True)
class StoreSettings:
    backend: str
    sqlite_path: str
    postgres_dsn: str
    postgres_timeout_seconds: float
    postgres_pool_size: int
    migrate_on_start: bool


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    ca_file: str
    timeout_seconds: float


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    ca_file: str
    timeout_seconds: float
    send_deadline_seconds: float


@dataclass(frozen=True)
class HealthSettings:
    interval_seconds: float
    timeout_seconds: float
    warn_ms: float
    access: str
    token: str
    allow: list[str]
    service_id: str
    release_id: str
    canary_mailbox: str
    mailflow_interval_seconds: float
    mailflow_warn_seconds: float
    mailflow_fail_seconds: float
    canary_scope: str
    history_days: int
    history_raw_days: int
    history_queue: int
    reprobe_seconds: float
    alert_after_seconds: float
    recover_after_seconds: float


@dataclass(frozen=True)
class PlatformSettings:
    checks: list[str]
    interval_seconds: float
    timeout_seconds: float
    ca_file: str


@dataclass(frozen=True)
class EvidenceSettings:
    signing_key_file: str
    checkpoint_file: str


@dataclass(frozen=True)
class MetricsSettings:
    port: int
    host: str
    allow: list[str]


@dataclass(frozen=True)
class MailSettings:
    mark_read_on_open: bool
    max_upload_bytes: int
    autosave_seconds: int
    idle_refresh_minutes: int
    sent_copy: str


@dataclass(frozen=True)
class GraphSettings:
    base_url: str
    ca_file: str
    timeout_seconds: float
    retry_after_max_seconds: float
    page_size: int


@dataclass(frozen=True)
class FailoverSettings:
    initial_mode: str
    pilot_groups: list[str]
    reauth_minutes: int
    refresh_seconds: float


@dataclass(frozen=True)
class NotifySettings:
    webhooks: list[str]
    email_to: list[str]
    email_from: str
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_username: str
    smtp_password: str
    smtp_ca_file: str
    attempts: int
    backoff_seconds: float
    timeout_seconds: float
    retry_hours: float
    backoff_max_seconds: float

SECTIONS: dict[str, type[Any]] = {
    "general": GeneralSettings,
    "server": ServerSettings,
    "entra": EntraSettings,
    "access": AccessSettings,
    "session": SessionSettings,
    "crypto": CryptoSettings,
    "store": StoreSettings,
    "imap": ImapSettings,
    "smtp": SmtpSettings,
    "health": HealthSettings,
    "platform": PlatformSettings,
    "evidence": EvidenceSettings,
    "metrics": MetricsSettings,
    "mail": MailSettings,
    "graph": GraphSettings,
    "failover": FailoverSettings,
    "notify": NotifySettings,
}
_TYPES = {"str": "str", "int": "int", "float": "float", "bool": "bool", "list": "list[str]"}

S = TypeVar("S")


def check_sections(classes: Mapping[str, type[Any]] = SECTIONS) -> None:
    """Each section class has exactly the table's settings of that section, with their types."""
    for section, cls in classes.items():
        declared = {f.name: str(f.type) for f in fields(cls)}
        table = {f.name: _TYPES[f.kind] for f in FIELDS if f.section == section}
        if declared != table:
            raise TypeError(f"{cls.__name__} does not match the [{section}] settings table: "
                            f"{declared} != {table}")
    missing = {f.section for f in FIELDS} - set(classes)
    if missing:
        raise TypeError(f"settings sections without a class: {sorted(missing)}")


def build(cls: type[S], section: str, values: Mapping[str, Any]) -> S:
    """The section's dataclass filled from the flat ``section.name`` values."""
    return cls(**{f.name: values[f"{section}.{f.name}"] for f in fields(cls)})  # type: ignore[arg-type]
