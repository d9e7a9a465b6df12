"""Production TLS: the certificate and key named by ``server.tls_cert``/``server.tls_key``.

- ``check_certificate``: what ``gateway check-config`` says about them: problems (unreadable,
  the key does not match the certificate, not yet valid, expired) and a warning from
  ``WARN_DAYS`` days before the certificate expires.
- ``serve``: runs uvicorn and re-reads both files on SIGHUP (``systemctl reload gateway``).
  New connections get the new certificate; open ones are not dropped. A pair that fails to
  load is logged and the old one stays in use.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)
WARN_DAYS = 30


def check_certificate(cert_path: str, key_path: str,
                      now: dt.datetime | None = None) -> tuple[list[str], list[str]]:
    """(problems, warnings) about a PEM certificate chain and its private key."""
    if not cert_path or not key_path:
        return [], []
    now = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())[0]
    except (OSError, ValueError) as exc:
        return [f"server.tls_cert: cannot read a PEM certificate from {cert_path!r} ({exc}). "
                "Fix the path or the file."], []
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return [f"server.tls_key: cannot read an unencrypted PEM private key from "
                f"{key_path!r} ({exc}). Fix the path or the file."], []
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    problems, warnings = [], []
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        problems.append(f"server.tls_key: the key in {key_path!r} does not match the "
                        f"certificate in {cert_path!r}. Install the key the certificate was "
                        "issued for.")
    subject = cert.subject.rfc4514_string()
    if cert.not_valid_before_utc > now:
        problems.append(f"server.tls_cert: the certificate ({subject}) is not valid until "
                        f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC.")
    if cert.not_valid_after_utc <= now:
        problems.append(f"server.tls_cert: the certificate ({subject}) expired on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d}. Renew it, then "
                        "`systemctl reload gateway`.")
    elif cert.not_valid_after_utc <= now + dt.timedelta(days=WARN_DAYS):
        days = (cert.not_valid_after_utc - now).days
        warnings.append(f"server.tls_cert: the certificate ({subject}) expires on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d}, in {days} days. Renew it, then "
                        "`systemctl reload gateway` (no restart needed).")
    return problems, warnings


class CertReloader:
    """Re-reads the certificate and key into the live server's SSL context."""

    def __init__(self, context: ssl.SSLContext, cert_path: str, key_path: str) -> None:
        self.context = context
        self.cert_path = cert_path
        self.key_path = key_path

    def reload(self) -> bool:
        try:
            self.context.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS reload failed, keeping the old certificate: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s", self.cert_path)
        return True

    def on_sighup(self, _signum: int, _frame: Any) -> None:
        self.reload()


def serve(config: Any) -> None:
    """Run a ``uvicorn.Config`` until it stops, reloading its certificate on SIGHUP."""
    import uvicorn

    config.load()   # builds config.ssl now, so the reloader holds the context in use
    if config.ssl is not None and config.ssl_certfile:
        reloader = CertReloader(config.ssl, str(config.ssl_certfile), str(config.ssl_keyfile))
        signal.signal(signal.SIGHUP, reloader.on_sighup)
    uvicorn.Server(config).run()
