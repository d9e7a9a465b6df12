"""The process-group readers the dev stack and the benchmarks share (gateway.devstack.procs),
on a real process started in its own session."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.devstack.procs import free_port, group_cpu, group_members, group_rss_mb


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname()[1] == port


def test_a_process_group_is_read_from_proc() -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert group_members(proc.pid) == [proc.pid]
        count, mb = group_rss_mb(proc.pid)
        assert count == 1 and mb > 0
        assert group_cpu(proc.pid) >= 0
    finally:
        proc.kill()
        proc.wait(5)
    assert group_members(proc.pid) == []
    assert group_rss_mb(proc.pid) == (0, 0)


def test_group_cpu_counts_children_that_have_ended() -> None:
    """Dovecot runs each IMAP connection in a process that ends with it: the CPU it used
    must still be billed to the group once the process is gone."""
    burn = ("import time\n"
            "while time.process_time() < 0.3:\n"
            "    pass\n")
    proc = subprocess.Popen(
        ["sh", "-c", f"{shlex.quote(sys.executable)} -c {shlex.quote(burn)} && exec sleep 60"],
        start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(group_members(proc.pid)) != 1 or _command(proc.pid) != "sleep":
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.05)
        assert group_cpu(proc.pid) >= 0.25
    finally:
        proc.kill()
        proc.wait(5)


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()
