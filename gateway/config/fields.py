"""The settings table: every setting the gateway reads, declared once with its type, default
and one line of documentation. ``docs/configuration.md`` must describe each (a test checks);
``gateway.config.sections`` holds one typed dataclass per section, checked against this table
when the package is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "GATEWAY_"


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class Field:
    section: str
    name: str
    kind: str  # str | int | bool | float | list
    default: Any
    doc: str
    secret: bool = False

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.name.upper()}"


def _f(section: str, name: str, kind: str, default: Any, doc: str, secret: bool = False) -> Field:
    return Field(section, name, kind, default, doc, secret)


FIELDS: tuple[Field, ...] = (
    # -- general
    _f("general", "environment", "str", "development",
       "`development` or `production`; the demo and dev shortcuts refuse to run in production."),
    _f("general", "log_level", "str", "info", "Log level: debug, info, warning or error."),
    _f("general", "timezone", "str", "Europe/London", "Time zone for dates shown to members."),
    # -- server
    _f("server", "host", "str", "127.0.0.1", "Address uvicorn listens on."),
    _f("server", "port", "int", 8443, "Port uvicorn listens on."),
    _f("server", "public_url", "str", "https://localhost:8443",
       "The https:// URL members use; its origin is the only one CSRF accepts and the sign-in "
       "redirect URI is built from it."),
    _f("server", "tls_cert", "str", "", "Path to the PEM certificate chain; empty = plain HTTP "
       "(only behind a TLS-terminating proxy)."),
    _f("server", "tls_key", "str", "", "Path to the PEM private key for `tls_cert`."),
    _f("server", "trusted_proxies", "list", [],
       "Addresses or networks of the TLS-terminating proxies: only from them are "
       "X-Forwarded-For/-Proto believed (the client address in logs and allow-lists) and an "
       "X-Request-ID kept (a plain token of 8-64 characters; otherwise, and from anyone else, "
       "the gateway makes its own); empty = none."),
    _f("server", "workers", "int", 1,
       "Gateway processes sharing the port (one per core is usual). With more than one, "
       "SIGHUP restarts them, which also reloads the certificate."),
    _f("server", "max_body_bytes", "int", 26_214_400,
       "Largest request body accepted (uploads included), in bytes."),
    # -- entra
    _f("server", "header_timeout_seconds", "float", 10.0,
       "A request's line and headers must arrive within this time, else 408 and close."),
    _f("server", "body_timeout_seconds", "float", 30.0,
       "The longest pause allowed while a request body arrives, else the connection closes."),
    _f("server", "max_header_bytes", "int", 16_384,
       "Largest request line plus headers, in bytes; larger gets 400."),
    _f("server", "max_requests_per_connection", "int", 1000,
       "Requests served on one connection before it is closed (Connection: close)."),
    _f("server", "keepalive_seconds", "float", 5.0,
       "How long an idle kept-alive connection stays open between requests."),
    _f("entra", "authority", "str", "",
       "Entra ID authority, e.g. https://login.microsoftonline.com/<tenant-id>."),
    _f("entra", "client_id", "str", "",
       "Application (client) id of the gateway's app registration."),
    _f("entra", "client_secret", "str", "", "Client secret of the app registration.", secret=True),
    _f("entra", "ca_file", "str", "",
       "CA bundle for talking to Entra ID and Graph; empty = the system store."),
    _f("entra", "imap_scope", "str", "https://outlook.office.com/IMAP.AccessAsUser.All",
       "Delegated scope for IMAP."),
    _f("entra", "smtp_scope", "str", "https://outlook.office.com/SMTP.Send",
       "Delegated scope for SMTP submission."),
    _f("entra", "graph_scope", "str", "https://graph.microsoft.com/Calendars.ReadWrite",
       "Delegated scope for the calendar (obtained silently when first needed)."),
    _f("entra", "post_logout_url", "str", "",
       "Where Entra sends the browser after sign-out; empty = the gateway's signed-out page."),
    # -- access
    _f("access", "member_roles", "list", ["Gateway.Member"], "App roles that make a member."),
    _f("access", "admin_roles", "list", ["Gateway.Admin"], "App roles that make an ICT admin."),
    _f("access", "member_groups", "list", [], "Entra group object ids that make a member."),
    _f("access", "admin_groups", "list", [], "Entra group object ids that make an ICT admin."),
    _f("access", "api_refusals_per_minute", "int", 20,
       "Bad API keys one address may send in a minute; then 429 until the minute ends."),
    _f("access", "signin_starts_per_address", "int", 300,
       "Sign-ins one address may start in ten minutes (each keeps ~1 KB until used or "
       "expired); then 429."),
    _f("access", "signin_starts_total", "int", 5000,
       "Sign-ins all addresses together may start in ten minutes, per instance; then 429."),
    # -- session
    _f("session", "idle_minutes", "int", 30, "A session unused this long ends."),
    _f("session", "absolute_hours", "int", 12,
       "A session ends this long after sign-in, used or not."),
    # -- crypto
    _f("crypto", "keys", "list", [],
       "AES-256-GCM keys (base64, 32 bytes each) for token caches and the outbox. The first "
       "encrypts; all decrypt, so a new key goes first and old ones stay until re-encrypted.",
       secret=True),
    # -- store
    _f("store", "backend", "str", "sqlite", "`sqlite` (one instance) or `postgres`."),
    _f("store", "sqlite_path", "str", "var/gateway.db", "SQLite database file."),
    _f("store", "postgres_dsn", "str", "", "PostgreSQL DSN when backend = postgres.", secret=True),
    _f("store", "postgres_timeout_seconds", "float", 5.0,
       "Longest wait for a PostgreSQL connection or one statement; past it the request fails "
       "with 'store unavailable' instead of hanging."),
    _f("store", "postgres_pool_size", "int", 10,
       "Most PostgreSQL connections one instance holds (plus one for change notices)."),
    _f("store", "migrate_on_start", "bool", True,
       "Apply pending PostgreSQL schema migrations when the gateway starts; false = refuse to "
       "start until `gateway migrate` has run (for a database role without DDL rights)."),
    # -- imap
    _f("imap", "host", "str", "outlook.office365.com", "IMAP server (implicit TLS)."),
    _f("imap", "port", "int", 993, "IMAP port."),
    _f("imap", "ca_file", "str", "", "CA bundle for the IMAP server; empty = the system store."),
    _f("imap", "timeout_seconds", "float", 20.0, "Timeout for one IMAP command."),
    # -- smtp
    _f("smtp", "host", "str", "smtp.office365.com", "SMTP submission server (STARTTLS)."),
    _f("smtp", "port", "int", 587, "SMTP submission port."),
    _f("smtp", "ca_file", "str", "", "CA bundle for the SMTP server; empty = the system store."),
    _f("smtp", "timeout_seconds", "float", 30.0, "Timeout for one SMTP exchange."),
    _f("smtp", "send_deadline_seconds", "float", 150.0,
       "The most one send may take, start to end; a message being sent is claimed for this "
       "long plus a margin, so a sender that died frees it soon after."),
    # -- health and monitoring (gateway/health.py, gateway/probes.py, gateway/metrics.py)
    _f("health", "interval_seconds", "float", 30.0,
       "How often the background probes check each upstream; /health serves the latest results."),
    _f("health", "timeout_seconds", "float", 10.0,
       "A probe that takes longer is cut off and its check reported as failing."),
    _f("health", "warn_ms", "float", 2000.0,
       "A responseTime check slower than this many milliseconds reports `warn`."),
    _f("health", "access", "str", "network",
       "Who may read the detailed /health document (and /metrics on the main port): `open`, "
       "`token` (Authorization: Bearer health.token) or `network` (health.allow). Others get "
       "the overall status only; /livez and /readyz are always open."),
    _f("health", "token", "str", "", "Bearer token for health.access = token.", secret=True),
    _f("health", "allow", "list", ["127.0.0.1/32", "::1/128"],
       "Client networks allowed the detailed health when health.access = network."),
    _f("health", "service_id", "str", "failover-mail-gateway",
       "`serviceId` in the health document (name this instance)."),
    _f("health", "release_id", "str", "",
       "`releaseId` in the health document; empty = the gateway's version."),
    _f("health", "canary_mailbox", "str", "",
       "Mailbox the probes sign in to with an app-only (client credentials) token: IMAP login "
       "and SELECT INBOX, a Graph call, and the mail-flow canary. Empty = no canary."),
    _f("health", "mailflow_interval_seconds", "float", 0.0,
       "How often the mail-flow canary sends a tagged message to the canary mailbox and "
       "times its arrival over IMAP (`mailflow:latency`); 0 = never."),
    _f("health", "mailflow_warn_seconds", "float", 60.0,
       "Mail-flow latency above this reports `warn`."),
    _f("health", "mailflow_fail_seconds", "float", 300.0,
       "Mail-flow latency above this (or no arrival) reports `fail`."),
    _f("health", "canary_scope", "str", "https://outlook.office365.com/.default",
       "App-only scope the canary asks Entra for (client credentials) for IMAP and SMTP: "
       "Exchange Online's documented `https://outlook.office365.com/.default`."),
    _f("health", "history_days", "int", 400,
       "Probe results, check transitions and canary rounds are kept this many days."),
    _f("health", "history_raw_days", "int", 14,
       "After this many days the kept probe results are rolled up to one row per check per "
       "hour (counts, failures, median, p95 and max)."),
    _f("health", "history_queue", "int", 5000,
       "Most probe results waiting to be written to the store; past it the oldest are "
       "dropped (and counted), so a slow store never slows the probes or a member's page."),
    _f("health", "reprobe_seconds", "float", 2.0,
       "A member's request that meets an upstream failure re-probes that upstream at once, "
       "or this many seconds after its last probe began if that was more recent: at most "
       "one probe per this many seconds, and none of these failures goes unprobed."),
    _f("health", "alert_after_seconds", "float", 120.0,
       "ICT is notified (notify.webhooks, notify.email_to) when an upstream or the canary "
       "has failed this long; 0 = never."),
    _f("health", "recover_after_seconds", "float", 120.0,
       "After an alert, the check must pass this long before the recovery is notified (a "
       "flapping check sends one alert, not one per flap)."),
    # -- the supplier's platform, watched (gateway/platform.py)
    _f("platform", "checks", "list", [],
       "Checks of the usual mobile platform, one string each: `https NAME URL [status=200] "
       "[text=WORDS]`, `tcp NAME HOST:PORT` or `tls NAME HOST:PORT [cert_days=21]`. Shown in "
       "/health as `platform:NAME`; they never make the gateway itself unhealthy."),
    _f("platform", "interval_seconds", "float", 60.0, "How often each platform check runs."),
    _f("platform", "timeout_seconds", "float", 10.0, "A platform check taking longer fails."),
    _f("platform", "ca_file", "str", "",
       "CA bundle for the platform checks' TLS; empty = the system store."),
    # -- the evidence report (gateway/evidence/)
    _f("evidence", "signing_key_file", "str", "",
       "Ed25519 private key (PEM) that signs evidence reports and audit checkpoints; made "
       "(mode 0600) on first use if missing; empty = `evidence-signing.key` beside "
       "`store.sqlite_path`. Keep it out of the store and back it up."),
    _f("evidence", "checkpoint_file", "str", "",
       "Signed daily audit checkpoints are also appended here, outside the store, so that a "
       "shortened or re-written audit table is detected even with its checkpoints deleted; "
       "empty = `audit-checkpoints.jsonl` beside the signing key."),
    _f("metrics", "port", "int", 0,
       "Serve Prometheus /metrics on this separate port (and not on the main one); 0 = serve "
       "/metrics on the main port to the callers metrics.allow or health.access admit."),
    _f("metrics", "host", "str", "127.0.0.1", "Address the separate metrics port listens on."),
    _f("metrics", "allow", "list", [],
       "Client networks (the scraper's address; behind a trusted proxy, the address the proxy "
       "forwards) that may read /metrics on the main port, besides those health.access admits. "
       "Keep it the same as the proxy's own allow-list for /metrics."),
    # -- mail
    _f("mail", "mark_read_on_open", "bool", True, "Opening a message marks it read."),
    _f("mail", "max_upload_bytes", "int", 20_971_520,
       "Largest total of attachments a member may upload to one message, in bytes."),
    _f("mail", "autosave_seconds", "int", 30,
       "How often a message being written is saved to Drafts (0 = only on request)."),
    _f("mail", "idle_refresh_minutes", "int", 25,
       "IMAP IDLE is re-issued this often (Exchange drops it at 30 minutes)."),
    _f("mail", "sent_copy", "str", "server",
       "Who saves the copy in Sent Items: `server` (Exchange Online saves every SMTP AUTH "
       "submission itself; a second copy from the gateway would make two) or `gateway` (the "
       "gateway APPENDs it, for a mail server that does not)."),
    # -- graph
    _f("graph", "base_url", "str", "https://graph.microsoft.com/v1.0", "Microsoft Graph base URL."),
    _f("graph", "ca_file", "str", "",
       "CA bundle for Microsoft Graph; empty = the same as `entra.ca_file`."),
    _f("graph", "timeout_seconds", "float", 15.0, "Timeout for one Graph request."),
    _f("graph", "retry_after_max_seconds", "float", 10.0,
       "Longest total wait the gateway spends honouring Graph's Retry-After (429/503) before "
       "it gives up and tells the member to try again later."),
    _f("graph", "page_size", "int", 100,
       "Events asked for per calendarView page (`$top`); further pages follow @odata.nextLink."),
    # -- failover switch
    _f("failover", "initial_mode", "str", "standby",
       "Mode in force before anyone has flipped the switch: `standby` or `active`."),
    _f("failover", "pilot_groups", "list", [],
       "Entra group object ids admitted in every mode (besides ICT admins), e.g. a pilot group."),
    _f("failover", "reauth_minutes", "int", 15,
       "Flipping the switch from the admin page needs a sign-in this recent."),
    _f("failover", "refresh_seconds", "float", 1.0,
       "How often each instance re-reads the switch from the store."),
    # -- notifications of switch changes
    _f("notify", "webhooks", "list", [],
       "Webhook URLs (Teams or Slack incoming webhooks) told of every switch change.",
       secret=True),
    _f("notify", "email_to", "list", [], "ICT addresses emailed on every switch change."),
    _f("notify", "email_from", "str", "", "From address of those emails."),
    _f("notify", "smtp_host", "str", "", "SMTP relay for those emails (not the members' route); "
       "empty = no email."),
    _f("notify", "smtp_port", "int", 25, "Port of that relay."),
    _f("notify", "smtp_starttls", "bool", True, "Use STARTTLS with that relay."),
    _f("notify", "smtp_username", "str", "", "User name for that relay; empty = no AUTH."),
    _f("notify", "smtp_password", "str", "", "Password for that relay.", secret=True),
    _f("notify", "smtp_ca_file", "str", "", "CA bundle for that relay; empty = the system store."),
    _f("notify", "attempts", "int", 5, "Attempts per webhook or email before giving up."),
    _f("notify", "backoff_seconds", "float", 2.0,
       "Wait before the first retry; doubled for each further one."),
    _f("notify", "timeout_seconds", "float", 10.0, "Timeout for one webhook call or email."),
    _f("notify", "retry_hours", "float", 6.0,
       "Deliveries are kept in the store and retried (across restarts, by any instance) for "
       "this many hours before they are given up and reported in /health."),
    _f("notify", "backoff_max_seconds", "float", 900.0, "Longest wait between two retries."),
)
