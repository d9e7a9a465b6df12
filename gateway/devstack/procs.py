"""The processes the dev stack, the tests and the benchmarks start on loopback: a free port to
give one, and the members of its process group read from /proc (a server started with
``start_new_session=True`` leads its own group, and its workers or children share it), with
the CPU and memory they use."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def group_stats(pgid: int) -> Iterator[tuple[int, list[str]]]:
    """(pid, /proc/PID/stat fields after the command name) of each process in group ``pgid``,
    zombies included: the fields are state, ppid, pgrp, ... (utime and stime at 11 and 12,
    the same for ended children at 13 and 14)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 14 and fields[2] == str(pgid):
            yield int(entry), fields


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    return [pid for pid, fields in group_stats(pgid) if fields[0] not in ("Z", "X")]


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a process group, and by
    their children that have ended and been waited for (cutime and cstime, fields 13 and 14).
    Without those a server that runs each connection in a process of its own (Dovecot's imap
    and imap-login) would be billed nothing for a connection by the time it has closed."""
    ticks = sum(int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
                for _, f in group_stats(pgid))
    return ticks / os.sysconf("SC_CLK_TCK")


def group_rss_mb(pgid: int) -> tuple[int, float]:
    """(processes, summed RSS in MB) of a process group."""
    count, kb = 0, 0
    for pid, _ in group_stats(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
                    count += 1
        except (OSError, ValueError, IndexError):
            continue
    return count, kb / 1024
