"""An unusable SQLite store path is named: `gateway check-config` catches it before start
(as the unprivileged user a container or the systemd unit runs as), and `gateway serve`'s
start-up error names store.sqlite_path. The Containerfile gives the default relative path a
writable home (WORKDIR /var/lib/gateway, a volume)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
AUTHORITY = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temporary directory the unprivileged user can reach (pytest's own is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="gateway-store-path-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _config(tmp_path: Path, sqlite_path: str) -> Path:
    conf = tmp_path / "gateway.toml"
    settings = load_settings(environ={"GATEWAY_ENTRA_AUTHORITY": AUTHORITY,
                                      "GATEWAY_STORE_SQLITE_PATH": sqlite_path})
    conf.write_text(settings.to_toml())
    conf.chmod(0o644)
    return conf


def _gateway(args: list[str], conf: Path, cwd: Path | str, user: list[str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_CONFIG"] = str(conf)
    return subprocess.run([*(user or []), sys.executable, "-m", "gateway", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_check_config_catches_the_default_path_in_an_unwritable_working_directory(
    tmp_path: Path,
) -> None:
    """As in a container without a WORKDIR: the gateway user in `/` cannot create
    var/gateway.db. check-config exits 1 naming store.sqlite_path and the fix."""
    conf = _config(tmp_path, "var/gateway.db")
    r = _gateway(["check-config"], conf, "/", NOBODY)
    assert r.returncode == 1, r.stdout + r.stderr
    problems = [line for line in r.stderr.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1, r.stderr
    assert "store.sqlite_path" in problems[0] and "'/var/gateway.db'" in problems[0]
    assert "GATEWAY_STORE_SQLITE_PATH" in problems[0]


def test_check_config_passes_in_a_writable_working_directory_and_creates_nothing(
    tmp_path: Path,
) -> None:
    """The same settings from a directory the user owns (the image's WORKDIR): no problem,
    and the check leaves nothing behind."""
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    conf = _config(tmp_path, "var/gateway.db")
    r = _gateway(["check-config"], conf, data, NOBODY)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "store.sqlite_path" not in r.stderr
    assert list(data.iterdir()) == []


def test_check_config_catches_a_read_only_database_file(tmp_path: Path) -> None:
    """An existing database the user may not write is caught too."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "gateway.db"
    db.write_bytes(b"")
    db.chmod(0o444)
    conf = _config(tmp_path, str(db))
    r = _gateway(["check-config"], conf, tmp_path, NOBODY)
    assert r.returncode == 1
    assert re.search(r"problem: store\.sqlite_path: cannot write .*gateway\.db", r.stderr), \
        r.stderr


def test_serve_names_the_setting_when_the_store_cannot_be_opened(tmp_path: Path) -> None:
    """`gateway serve` with a path under a regular file (as root, no permission check would
    catch it) stops before starting with one line that names store.sqlite_path."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    conf = _config(tmp_path, str(blocker / "gateway.db"))
    check = _gateway(["check-config"], conf, tmp_path)
    assert check.returncode == 1 and "problem: store.sqlite_path" in check.stderr
    r = _gateway(["serve"], conf, tmp_path, timeout=60)
    assert r.returncode == 1
    assert any(line.startswith("configuration error: store.sqlite_path: cannot create")
               for line in r.stderr.splitlines()), r.stderr
    assert "GATEWAY_STORE_SQLITE_PATH" in r.stderr and "Traceback" not in r.stderr


def test_the_store_itself_names_the_setting_when_it_cannot_open(tmp_path: Path) -> None:
    """Should the file become unusable between the check and the start (or in a worker),
    the store's own start-up error names store.sqlite_path too."""
    import asyncio

    from gateway.errors import StoreUnavailable
    from gateway.store.sqlite import SqliteStore

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = SqliteStore(blocker / "gateway.db")
    with pytest.raises(StoreUnavailable, match=r"store\.sqlite_path: cannot open"):
        asyncio.run(store.open())


def test_containerfile_gives_the_default_store_path_a_writable_home() -> None:
    """WORKDIR is the data directory, created for the image's user and declared a volume, so
    the default relative store.sqlite_path works on a read-only root filesystem."""
    text = (DEPLOY / "Containerfile").read_text()
    final = text.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\d+):(\d+)", final, re.M)
    workdir = re.search(r"^WORKDIR (\S+)", final, re.M)
    assert user and workdir
    assert re.search(rf"install -d -o {user.group(1)} -g {user.group(2)} .*{workdir.group(1)}",
                     final)
    assert f'VOLUME ["{workdir.group(1)}"]' in final


@pytest.mark.parametrize("path", ["var/gateway.db", ":memory:"])
def test_path_check_accepts_usable_paths(path: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.store.sqlite import path_problem

    monkeypatch.chdir(tmp_path)
    assert path_problem(path) is None
