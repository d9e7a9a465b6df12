"""certs/README.md describes exactly what `gateway certs dev` writes there, and is the only
file of that folder git keeps."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gateway.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_every_file_certs_dev_writes(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "dev", "--dir", str(tmp_path / "certs")]) == 0
    written = {p.name for p in (tmp_path / "certs").iterdir()}
    text = (ROOT / "certs" / "README.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)` \|", text, re.M))
    assert written == listed
    for key in (n for n in written if n.endswith("-key.pem")):
        assert (tmp_path / "certs" / key).stat().st_mode & 0o077 == 0
        assert re.search(rf"^\| `{key}` \|.*\*\*never\*\* \|$", text, re.M)


def test_readme_is_tracked_and_keys_are_ignored() -> None:
    assert subprocess.run(["git", "check-ignore", "-q", "certs/README.md"], cwd=ROOT
                          ).returncode == 1
    for name in ("dev-ca-key.pem", "server-key.pem", "server.pem", "dev-ca.pem"):
        assert subprocess.run(["git", "check-ignore", "-q", f"certs/{name}"], cwd=ROOT
                              ).returncode == 0
