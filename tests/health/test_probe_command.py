"""`gateway probe`: one line and the Nagios exit codes, against the real dev stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.config import FIELDS
from gateway.devstack.stack import DevStack
from tests.conftest import LoopThread


@pytest.fixture
def stack_env(stack: DevStack, tmp_path: Path, graph_lite: Any,
              monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment that points `gateway probe` at the dev stack."""
    settings = stack.gateway_settings(8443, store__sqlite_path=str(tmp_path / "p.db"),
                                      graph__base_url=graph_lite.base_url,
                                      health__timeout_seconds=2.0)
    for f in FIELDS:
        value = settings.value(f.key)
        if value != f.default:
            monkeypatch.setenv(f.env, ",".join(value) if isinstance(value, list) else str(value))


def _probe(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["probe"])
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    return code, out


def test_probe_ok_then_critical_when_dovecot_stops(stack_env: None, stack: DevStack,
                                                   loop_thread: LoopThread,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 with every check passing; 2 naming imap when Dovecot is down; 0 again after."""
    code, out = _probe(capsys)
    assert code == 0 and out.startswith("HEALTH OK"), out
    assert stack.mail is not None
    try:
        loop_thread.run(stack.mail.stop_imap())
        code, out = _probe(capsys)
        assert code == 2 and out.startswith("HEALTH CRITICAL"), out
        assert "imap:responseTime fail" in out
    finally:
        loop_thread.run(stack.mail.start_imap())
    assert _probe(capsys)[0] == 0


def test_probe_warning(stack_env: None, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 1 when a check only warns (here: slower than an impossible threshold)."""
    monkeypatch.setenv("GATEWAY_HEALTH_WARN_MS", "0.001")
    code, out = _probe(capsys)
    assert code == 1 and out.startswith("HEALTH WARNING"), out


def test_probe_unknown_on_bad_settings(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 3 when the checks cannot run at all (a bad setting), naming the key."""
    monkeypatch.setenv("GATEWAY_HEALTH_ACCESS", "everyone")
    code, out = _probe(capsys)
    assert code == 3 and "health.access" in out
