"""The command-line controls against a store file: failover status/activate/standby/drill,
audit verify/export, apikey create/list/revoke; same rules as the page and the API."""

from __future__ import annotations

import asyncio
import csv
import http.server
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.devstack.procs import free_port
from gateway.devstack.stack import DevStack
from gateway.devstack.users import DRILL_GROUP, EMPTY_GROUP
from gateway.store.sqlite import SqliteStore
from gateway.switch.machine import Mode, Switch


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("GATEWAY_STORE_SQLITE_PATH", str(path))
    monkeypatch.setenv("GATEWAY_GENERAL_TIMEZONE", "UTC")
    return path


def stored_mode(path: Path) -> Mode:
    async def read() -> Mode:
        store = SqliteStore(path)
        await store.open()
        try:
            return (await Switch(store, lambda: 0.0).current()).mode
        finally:
            await store.close()
    return asyncio.run(read())


def test_activate_standby_and_status(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """activate and standby change the stored switch; status prints it, also as JSON."""
    assert main(["failover", "activate", "--reason", "MDM down", "--by", "ops"]) == 0
    assert stored_mode(db) is Mode.ACTIVE
    assert main(["failover", "status", "--json"]) == 0
    out = capsys.readouterr().out
    state = json.loads(out[out.index("{"):])
    assert (state["mode"], state["by"], state["reason"], state["version"]) == (
        "active", "ops", "MDM down", 1)
    assert main(["failover", "standby", "--reason", "fixed"]) == 0
    assert stored_mode(db) is Mode.STANDBY
    assert main(["failover", "status"]) == 0
    assert "mode:    standby" in capsys.readouterr().out


def test_drill_needs_group_and_end_time(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """drill without --group or --until is a usage error; without a reason it is refused
    before the directory is asked."""
    with pytest.raises(SystemExit) as exit_:
        main(["failover", "drill", "--reason", "r", "--until", "1h"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["failover", "drill", "--group", DRILL_GROUP, "--reason", "r"])
    assert exit_.value.code == 2
    assert main(["failover", "drill", "--group", DRILL_GROUP, "--until", "30m",
                 "--reason", " "]) == 1
    assert "reason is required" in capsys.readouterr().err
    assert stored_mode(db) is Mode.STANDBY


@pytest.fixture
def directory_env(db: Path, stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's settings point at the dev stack's Entra and Graph stand-ins."""
    settings = stack.gateway_settings(8443)
    for key in ("entra.authority", "entra.client_id", "entra.client_secret", "entra.ca_file",
                "graph.base_url", "graph.ca_file"):
        monkeypatch.setenv("GATEWAY_" + key.upper().replace(".", "_"), str(settings.value(key)))
    return db


def test_drill_group_is_looked_up_and_shown_with_its_members(
    directory_env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The directory confirms the group: the drill starts and says who it is and how many."""
    assert main(["failover", "drill", "--group", DRILL_GROUP, "--until", "30m",
                 "--reason", "rehearsal"]) == 0
    out = capsys.readouterr().out
    assert f"group:   {DRILL_GROUP}" in out
    assert f"members: Mail gateway drill: members ({DRILL_GROUP}), 1 person" in out
    assert stored_mode(directory_env) is Mode.DRILL


@pytest.mark.parametrize("group,words", [
    (EMPTY_GROUP, "has nobody in it"),
    ("0f0f0f0f-1111-4222-8333-444455556666", "No group 0f0f0f0f"),
    ("drill-group", "not an Entra group object id"),
])
def test_drill_for_a_group_that_matches_nobody_is_refused(
    directory_env: Path, capsys: pytest.CaptureFixture[str], group: str, words: str,
) -> None:
    """An empty group, an unknown id or something that is not an id: refused, nothing
    changed, and the message says --force exists."""
    assert main(["failover", "drill", "--group", group, "--until", "30m",
                 "--reason", "rehearsal"]) == 1
    err = capsys.readouterr().err
    assert words in err and "Nothing was changed" in err and "--force" in err
    assert stored_mode(directory_env) is Mode.STANDBY


def test_force_starts_a_drill_for_an_empty_group_with_a_warning_in_the_audit(
    directory_env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """--force goes ahead, warns, shows the count (0) and records that it was not confirmed."""
    assert main(["failover", "drill", "--group", EMPTY_GROUP, "--until", "30m",
                 "--reason", "set up early", "--force"]) == 0
    captured = capsys.readouterr()
    assert "warning: drill group not confirmed" in captured.err
    assert "0 people" in captured.out
    assert stored_mode(directory_env) is Mode.DRILL
    assert main(["audit", "export", "--format", "json"]) == 0
    kinds = [e["kind"] for e in json.loads(capsys.readouterr().out)]
    assert "failover.drill.group_unconfirmed" in kinds and "failover.changed" in kinds


def test_drill_without_a_directory_to_ask_needs_force(db: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """No Entra app configured: the group cannot be confirmed; refused, or --force."""
    args = ["failover", "drill", "--group", DRILL_GROUP, "--until", "30m", "--reason", "r"]
    assert main(args) == 1
    assert "needed to ask the directory" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "not confirmed by the directory" in capsys.readouterr().out
    assert stored_mode(db) is Mode.DRILL


def test_missing_reason_is_a_usage_error(db: Path) -> None:
    """Every flip needs --reason."""
    with pytest.raises(SystemExit) as exit_:
        main(["failover", "activate"])
    assert exit_.value.code == 2


def test_refusals_exit_1_with_the_reason(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An end time in the past, a blank reason or a stale version exit 1 and say why."""
    assert main(["failover", "activate", "--reason", "r", "--until", "2001-01-01T00:00Z"]) == 1
    assert "already passed" in capsys.readouterr().err
    assert main(["failover", "activate", "--reason", "  "]) == 1
    assert "reason is required" in capsys.readouterr().err
    assert main(["failover", "activate", "--reason", "first"]) == 0
    assert main(["failover", "standby", "--reason", "late", "--expect-version", "0"]) == 1
    assert "changed meanwhile" in capsys.readouterr().err
    assert stored_mode(db) is Mode.ACTIVE


def test_audit_verify_passes_then_names_a_tampered_entry(
    db: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`audit verify` exits 0 on an intact chain and 1 naming the first broken entry."""
    for reason in ("one", "two", "three"):
        assert main(["failover", "activate", "--reason", reason]) == 0
    assert main(["audit", "verify"]) == 0
    assert "intact: 3 entries" in capsys.readouterr().out
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE audit SET body=replace(body, 'two', 'TWO') WHERE seq=2")
    con.close()
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at entry 2" in capsys.readouterr().err


def test_audit_export_csv_and_json_with_range(db: Path, capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    """`audit export` writes CSV or JSON for a time range, to stdout or a file."""
    assert main(["failover", "activate", "--reason", "exported"]) == 0
    capsys.readouterr()
    assert main(["audit", "export", "--format", "csv", "--since", "2000-01-01"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["kind"] == "failover.changed" and "exported" in rows[0]["data"]
    out = tmp_path / "audit.json"
    assert main(["audit", "export", "--until", "2000-01-01", "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == []


def test_timeline_lists_active_periods(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`failover timeline` shows an incident per active period, with its reason."""
    assert main(["failover", "activate", "--reason", "outage A"]) == 0
    assert main(["failover", "standby", "--reason", "over"]) == 0
    capsys.readouterr()
    assert main(["failover", "timeline"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [i["reasons"] for i in data["incidents"]] == [["outage A"]]
    assert data["incidents"][0]["end_reason"] == "over"


def test_apikey_create_list_revoke(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key is printed once, listed by name only (never its secret), and revocable."""
    assert main(["apikey", "create", "runbook"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("gwk_") and len(secret) > 40
    assert main(["apikey", "list"]) == 0
    listing = capsys.readouterr().out
    assert "runbook\tlive" in listing and secret not in listing
    assert secret.encode() not in db.read_bytes()
    assert main(["apikey", "create", "runbook"]) == 1
    assert main(["apikey", "revoke", "runbook"]) == 0
    assert main(["apikey", "revoke", "runbook"]) == 1
    capsys.readouterr()
    assert main(["apikey", "list"]) == 0
    assert "runbook\trevoked" in capsys.readouterr().out


class _Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: answers 200, or (``hang``) reads the request and never answers."""

    hang = False
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        if self.hang:
            time.sleep(30)
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def hook() -> Iterator[tuple[type[_Hook], str]]:
    handler = type("Hook", (_Hook,), {"bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}/hook/secret-token"
    finally:
        server.shutdown()
        server.server_close()


def test_delivered_notification_is_reported_and_exit_0(db: Path, hook: tuple[type[_Hook], str],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A webhook that answers: the flip exits 0 and says it was delivered."""
    handler, url = hook
    monkeypatch.setenv("GATEWAY_NOTIFY_WEBHOOKS", url)
    assert main(["failover", "activate", "--reason", "told"]) == 0
    err = capsys.readouterr().err
    assert "notification to webhook 127.0.0.1" in err and "delivered" in err
    assert "secret-token" not in err
    assert json.loads(handler.bodies[0])["text"].startswith("Mail gateway switched to ACTIVE")


def test_dead_webhook_is_reported_and_exit_3_with_the_change_made(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing listens at the webhook: the change is made, the failure is said, exit 3."""
    monkeypatch.setenv("GATEWAY_NOTIFY_WEBHOOKS", f"http://127.0.0.1:{free_port()}/hook")
    monkeypatch.setenv("GATEWAY_NOTIFY_BACKOFF_SECONDS", "0.1")
    assert main(["failover", "activate", "--reason", "nobody hears"]) == 3
    err = capsys.readouterr().err
    assert "FAILED" in err and "the change WAS made" in err
    assert stored_mode(db) is Mode.ACTIVE


def test_hanging_webhook_is_cut_off_by_the_timeout_and_reported(
    db: Path, hook: tuple[type[_Hook], str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A receiver that never answers does not hold the command: each attempt ends at the
    notification timeout, the CLI gives up after its attempts and exits 3 saying so."""
    handler, url = hook
    handler.hang = True
    monkeypatch.setenv("GATEWAY_NOTIFY_WEBHOOKS", url)
    monkeypatch.setenv("GATEWAY_NOTIFY_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("GATEWAY_NOTIFY_BACKOFF_SECONDS", "0.1")
    assert main(["failover", "standby", "--reason", "hung receiver"]) == 3
    err = capsys.readouterr().err
    assert "FAILED" in err and "Timeout" in err
    assert len(handler.bodies) == 2   # two attempts at the terminal, not five


def test_a_person_who_looked_is_refused_after_another_change(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --expect-version, the version this person last saw (status, or their own
    change) guards their change: a colleague's flip in between gets it refused, naming both;
    after looking again it goes through. Someone who never looked is not guarded."""
    monkeypatch.setenv("SUDO_USER", "alice")
    assert main(["failover", "status"]) == 0
    assert "version: 0" in capsys.readouterr().out
    monkeypatch.setenv("SUDO_USER", "bob")                     # bob never looked
    assert main(["failover", "activate", "--reason", "bob's outage"]) == 0
    monkeypatch.setenv("SUDO_USER", "alice")
    assert main(["failover", "standby", "--reason", "alice's stale view"]) == 1
    err = capsys.readouterr().err
    assert "cli:bob set it to active" in err and "You last saw version 0" in err
    assert stored_mode(db) is Mode.ACTIVE
    assert main(["failover", "status"]) == 0
    assert main(["failover", "standby", "--reason", "alice looked again"]) == 0
    assert stored_mode(db) is Mode.STANDBY
