"""Production TLS: the certificate and key named by ``server.tls_cert``/``server.tls_key``.

- ``check_certificate``: what ``gateway check-config`` says about them: problems (unreadable,
  the key does not match the certificate, not yet valid, expired) and a warning from
  ``WARN_DAYS`` days before the certificate expires.
- ``server_context``: the server's SSL context (uvicorn's ``ssl_context_factory``, so every
  worker process builds the same one), offering exactly Mozilla's "intermediate" profile
  (https://ssl-config.mozilla.org/, guidelines 5.7, the version sslyze checks against):
  TLS 1.2 and 1.3; for 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305 (no CBC, no DHE:
  Python sets no DH parameters); the TLS 1.3 suites are OpenSSL's three, all in the profile;
  key-exchange groups X25519, P-256 and P-384 (OpenSSL 3's default also offers X448 and
  P-521, which the profile rejects); the client's cipher order wins, as the profile says.
- ``serve``: runs uvicorn and re-reads both files on SIGHUP (``systemctl reload gateway``).
  New connections get the new certificate; open ones are not dropped. A pair that fails to
  load is logged and the old one stays in use.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)
WARN_DAYS = 30

# Mozilla intermediate (5.7), OpenSSL names, TLS 1.2 only (1.3 suites are set apart).
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))
GROUPS = "X25519:P-256:P-384"
_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's SSL_CTX_set1_groups_list() is this ctrl


def _set_groups(context: ssl.SSLContext, groups: str) -> None:
    """Limit the key-exchange groups. Python 3.11's ssl module can name only one curve
    (``set_ecdh_curve``), so this calls OpenSSL's SSL_CTX_set1_groups_list on the context's
    SSL_CTX, resolved through the _ssl module's own libssl. The SSL_CTX pointer is the first
    field after the object header of CPython's PySSLContext; it is checked (its options must
    be the ones Python reports) before anything is written through it."""
    setter = getattr(context, "set_groups", None)  # a later Python may have it
    if callable(setter):
        setter(groups)
        return
    import _ssl

    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    header = object.__basicsize__  # ob_refcnt + ob_type
    ctx_ptr = ctypes.c_void_p.from_address(id(context) + header).value
    if not ctx_ptr or lib.SSL_CTX_get_options(ctx_ptr) != int(context.options):
        raise RuntimeError("cannot reach OpenSSL's SSL_CTX to set the TLS groups")
    if lib.SSL_CTX_ctrl(ctx_ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode()) != 1:
        raise RuntimeError(f"OpenSSL refused the TLS groups {groups!r}")


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """Make a server context offer Mozilla's intermediate profile and nothing else."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(TLS12_CIPHERS)
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # "server_preferred_order": false
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    _set_groups(context, GROUPS)
    return context


def server_context(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: its context (certificate, key, ALPN), hardened."""
    return harden(default())


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
