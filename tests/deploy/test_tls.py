"""Production certificates: check-config finds a key that does not match and warns 30 days
before expiry; a running `gateway serve` picks up a replaced certificate on SIGHUP."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.cli.main import main
from gateway.server.certs import make_dev_certs
from gateway.server.tls import check_certificate

NOW = dt.datetime.now(dt.UTC)


def self_signed(directory: Path, days: float) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    c, k = directory / "cert.pem", directory / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def test_matching_pair_valid_for_long_passes(tmp_path: Path) -> None:
    """A certificate with its own key, valid for 90 days: no problem, no warning."""
    c, k = self_signed(tmp_path, 90)
    assert check_certificate(str(c), str(k)) == ([], [])


def test_key_that_does_not_match_is_a_problem(tmp_path: Path) -> None:
    """Another certificate's key is refused, naming server.tls_key."""
    c, _ = self_signed(tmp_path / "a", 90)
    _, other = self_signed(tmp_path / "b", 90)
    problems, _ = check_certificate(str(c), str(other))
    assert len(problems) == 1 and "server.tls_key" in problems[0] and "match" in problems[0]


def test_expiry_warns_at_thirty_days_and_fails_when_past(tmp_path: Path) -> None:
    """29 days left warns; an expired certificate is a problem."""
    c, k = self_signed(tmp_path / "soon", 29)
    problems, warnings = check_certificate(str(c), str(k))
    assert problems == [] and len(warnings) == 1 and "expires" in warnings[0]
    problems, _ = check_certificate(str(c), str(k), now=NOW + dt.timedelta(days=40))
    assert any("expired" in p for p in problems)


def test_check_config_reports_mismatch_and_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway check-config` exits 1 on a mismatched key and prints the expiry warning."""
    c, _ = self_signed(tmp_path / "a", 10)
    _, other = self_signed(tmp_path / "b", 10)
    monkeypatch.setenv("GATEWAY_SERVER_TLS_CERT", str(c))
    monkeypatch.setenv("GATEWAY_SERVER_TLS_KEY", str(other))
    assert main(["check-config"]) == 1
    err = capsys.readouterr().err
    assert "does not match" in err and "warning: server.tls_cert" in err


def served_cert(port: int) -> bytes | None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)
    except OSError:
        return None


def der(pem: Path) -> bytes:
    return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(
        serialization.Encoding.DER)


def test_sighup_reloads_the_certificate_without_restart(tmp_path: Path) -> None:
    """After the files are replaced, SIGHUP makes the same process serve the new one."""
    first = make_dev_certs(tmp_path / "one")
    second = make_dev_certs(tmp_path / "two")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(first.server_cert, live / "cert.pem")
    shutil.copy(first.server_key, live / "key.pem")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
           "GATEWAY_SERVER_PORT": str(port),
           "GATEWAY_SERVER_PUBLIC_URL": f"https://127.0.0.1:{port}",
           "GATEWAY_SERVER_TLS_CERT": str(live / "cert.pem"),
           "GATEWAY_SERVER_TLS_KEY": str(live / "key.pem"),
           "GATEWAY_STORE_SQLITE_PATH": str(tmp_path / "gw.db"),
           "GATEWAY_GENERAL_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while served_cert(port) is None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "gateway serve did not start"
            time.sleep(0.1)
        assert served_cert(port) == der(first.server_cert)
        shutil.copy(second.server_cert, live / "cert.pem")
        shutil.copy(second.server_key, live / "key.pem")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_cert(port) != der(second.server_cert):
            assert time.monotonic() < deadline, "certificate not reloaded"
            time.sleep(0.1)
        assert proc.poll() is None, "the process restarted or died"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # waits, and closes the pipe
