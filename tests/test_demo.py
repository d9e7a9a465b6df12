"""`gateway demo` as a new user runs it: one process starts the whole stack, the printed URL
serves the sign-in, the sample member reaches their Inbox, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gateway.devstack.procs import free_port
from tests.conftest import form_action, form_fields, found


def _dovecots() -> set[int]:
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "dovecot":
                    pids.add(int(d.name))
            except OSError:
                continue
    return pids


def _runs_in(pid: int, workdir: Path) -> bool:
    """Whether a process was started from this demo's working directory."""
    try:
        return str(workdir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _eventually(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    """The running gateway re-reads the switch every few seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_demo_runs_signs_in_and_stops_cleanly() -> None:
    """The demo prints its URL and sign-ins, serves the member's Inbox, and stops on Ctrl-C
    with no stray process and its temporary directory gone."""
    before = _dovecots()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        text = "".join(out)
        assert f"https://127.0.0.1:{port}/" in text, text
        assert "alex.morgan@council.example" in text
        ca = found(re.search(r"signed by the dev CA at (\S+)", text)).group(1)
        workdir = Path(ca).parents[1]
        verify = ssl.create_default_context(cafile=ca)
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=base, verify=verify, trust_env=False) as browser:
            r = browser.get("/auth/start", params={"next": "/",
                                                   "login_hint": "alex.morgan@council.example"})
            page = browser.get(r.headers["location"] + "&dev_auto=1")
            reply = browser.post(form_action(page.text), data=form_fields(page.text))
            assert reply.status_code == 303
            inbox = browser.get("/")
            assert inbox.status_code == 200
            assert '<span class="who">Cllr Alex Morgan</span>' in inbox.text
            assert re.search(r'id="folder-count" class="muted"><strong>\d+</strong>', inbox.text)
            # The demo runs Exchange's IMAP personality, which refuses SEARCH CHARSET UTF-8:
            # a non-ASCII sender is still found (the seed's "Siân Llŷr Pennant").
            assert "Exchange Online's IMAP personality" in text
            results = browser.get("/mail/search", params={"q": "Siân", "scope": "all"})
            assert results.status_code == 200 and "Siân Llŷr Pennant" in results.text
            assert "Pont Llŷr: ffordd ar gau dros dro" in results.text
            # ICT flips the switch from the command line with the commands the banner prints:
            # they reach this demo (its --config), and status agrees with the banner's mode.
            assert "The failover switch is 'active' (version 0)" in text
            conf = found(re.search(r"gateway --config (\S+) failover status", text)).group(1)
            assert f"gateway --config {conf} probe" in text

            def gateway(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([sys.executable, "-m", "gateway", "--config", conf,
                                       *args], env=env, capture_output=True, text=True,
                                      timeout=60)
            status = gateway("failover", "status")
            assert status.returncode == 0 and "mode:    active" in status.stdout, status.stderr
            assert f"store: SQLite {workdir}" in status.stderr

            def flip(*args: str) -> None:
                done = gateway("failover", *args)
                assert done.returncode == 0, done.stdout + done.stderr
            flip("standby", "--reason", "Mobile platform back")
            assert _eventually(lambda: 'id="standby"' in browser.get("/mail").text)
            flip("activate", "--reason", "Mobile platform down again")
            assert _eventually(lambda: browser.get("/mail").status_code == 200
                               and 'id="folder-count"' in browser.get("/mail").text)
            # A monitor's check against the demo: healthy now; with Dovecot gone, CRITICAL.
            ok = gateway("probe")
            assert ok.returncode == 0, ok.stdout + ok.stderr
            for pid in _dovecots() - before:
                if _runs_in(pid, workdir):  # this demo's Dovecot only
                    os.kill(pid, signal.SIGKILL)
            down = gateway("probe")
            assert down.returncode == 2, down.stdout + down.stderr
            assert "imap" in down.stdout.lower()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert "nothing left running" in rest
        assert not workdir.exists()
        assert not [pid for pid in _dovecots() - before if _runs_in(pid, workdir)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
