"""The gateway command: certs dev, keygen, serve (TLS and behind a proxy), demo's refusal."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.cli.main import main
from gateway.crypto import new_key
from gateway.devstack.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_certs_dev_writes_ca_and_server_cert_with_private_keys_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`gateway certs dev` makes a CA and a server cert; keys are 0600."""
    assert main(["certs", "dev", "--dir", str(tmp_path)]) == 0
    for name in ("dev-ca.pem", "server.pem"):
        assert (tmp_path / name).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for name in ("dev-ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "never commit" in capsys.readouterr().out


def test_certs_directory_is_git_ignored() -> None:
    """Nothing generated under certs/ can be committed by accident."""
    out = subprocess.run(["git", "check-ignore", "certs/server-key.pem"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0


def test_keygen_prints_a_valid_key(capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway keygen` prints a key that the settings accept."""
    assert main(["keygen"]) == 0
    key = capsys.readouterr().out.strip()
    from gateway.config import load_settings
    assert load_settings(environ={"GATEWAY_CRYPTO_KEYS": key}).crypto_keys[0]


def test_demo_refuses_in_production(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway demo` will not start when the settings say production."""
    for k, v in {"GATEWAY_GENERAL_ENVIRONMENT": "production",
                 "GATEWAY_ENTRA_AUTHORITY": "https://login.example/t",
                 "GATEWAY_ENTRA_CLIENT_ID": "c", "GATEWAY_ENTRA_CLIENT_SECRET": "s",
                 "GATEWAY_CRYPTO_KEYS": new_key()}.items():
        monkeypatch.setenv(k, v)
    assert main(["demo"]) == 1
    assert "production" in capsys.readouterr().err


def _serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(url: str, verify: ssl.SSLContext | bool) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, verify=verify, trust_env=False)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_over_tls(tmp_path: Path) -> None:
    """`gateway serve` serves HTTPS from the configured certificate and key."""
    main(["certs", "dev", "--dir", str(tmp_path)])
    port = free_port()
    proc = _serve({"GATEWAY_SERVER_PORT": str(port),
                   "GATEWAY_SERVER_TLS_CERT": str(tmp_path / "server.pem"),
                   "GATEWAY_SERVER_TLS_KEY": str(tmp_path / "server-key.pem"),
                   "GATEWAY_STORE_SQLITE_PATH": str(tmp_path / "g.db")})
    try:
        ca = ssl.create_default_context(cafile=str(tmp_path / "dev-ca.pem"))
        r = _wait(f"https://127.0.0.1:{port}/readyz", verify=ca)
        assert r.status_code == 200 and r.headers["strict-transport-security"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # waits, and closes the pipe


def test_serve_plain_http_behind_a_proxy(tmp_path: Path) -> None:
    """Without a certificate it serves plain HTTP for a TLS-terminating proxy."""
    port = free_port()
    proc = _serve({"GATEWAY_SERVER_PORT": str(port),
                   "GATEWAY_SERVER_TRUSTED_PROXIES": "127.0.0.1",
                   "GATEWAY_STORE_SQLITE_PATH": str(tmp_path / "g.db")})
    try:
        r = _wait(f"http://127.0.0.1:{port}/livez", verify=False)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # waits, and closes the pipe


def test_serve_refuses_bad_settings_naming_the_key(tmp_path: Path) -> None:
    """A bad setting stops `gateway serve` with exit 1 and the key named."""
    proc = _serve({"GATEWAY_SERVER_PORT": "not-a-port",
                   "GATEWAY_STORE_SQLITE_PATH": str(tmp_path / "g.db")})
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert b"server.port" in out


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def test_serve_with_two_workers_and_stop(tmp_path: Path) -> None:
    """server.workers = 2 runs two worker processes that both serve; SIGTERM stops all."""
    main(["certs", "dev", "--dir", str(tmp_path)])
    port = free_port()
    proc = _serve({"GATEWAY_SERVER_PORT": str(port), "GATEWAY_SERVER_WORKERS": "2",
                   "GATEWAY_SERVER_TLS_CERT": str(tmp_path / "server.pem"),
                   "GATEWAY_SERVER_TLS_KEY": str(tmp_path / "server-key.pem"),
                   "GATEWAY_STORE_SQLITE_PATH": str(tmp_path / "g.db")})
    try:
        ca = ssl.create_default_context(cafile=str(tmp_path / "dev-ca.pem"))
        assert _wait(f"https://127.0.0.1:{port}/readyz", verify=ca).status_code == 200
        workers = [c for c in _children(proc.pid)
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, _children(proc.pid)
        for _ in range(10):
            r = httpx.get(f"https://127.0.0.1:{port}/livez", verify=ca, trust_env=False)
            assert r.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=20)  # waits, and closes the pipe
    assert proc.returncode is not None
    time.sleep(0.5)
    assert all(not Path(f"/proc/{w}").exists() or
               "Z" in Path(f"/proc/{w}/stat").read_text().split()[2] for w in workers)
