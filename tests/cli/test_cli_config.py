"""Which configuration a command runs with: none means exit 2 and nothing written; --config,
--env-file (read as systemd reads an EnvironmentFile) or GATEWAY_STORE_* name it; the store in
use is said on stderr, never with a password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.config import parse_env_file, redact_dsn
from gateway.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = Path("/usr/lib/systemd/user-environment-generators/"
                 "30-systemd-environment-d-generator")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _gateway(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd,
                          env=_clean_env(**env), capture_output=True, text=True, timeout=60)


def test_failover_activate_without_configuration_exits_2_and_writes_no_store(
    tmp_path: Path,
) -> None:
    """The trap: `gateway failover activate` with no configuration must not create a fresh
    var/gateway.db and report success; it exits 2, says why, and leaves the directory empty."""
    done = _gateway(tmp_path, "failover", "activate", "--reason", "MDM down")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no configuration" in done.stderr and "--env-file" in done.stderr
    assert "mode:" not in done.stdout
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("args", [
    ["failover", "status"], ["failover", "standby", "--reason", "r"],
    ["failover", "drill", "--group", "g", "--until", "1h", "--reason", "r"],
    ["failover", "timeline"], ["audit", "verify"], ["audit", "export"], ["apikey", "list"],
    ["apikey", "create", "k"], ["migrate"], ["serve"],
])
def test_every_state_command_needs_a_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str],
                                                   args: list[str]) -> None:
    """Each command that reads or changes the store refuses without a configuration."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert "no configuration" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_probe_without_configuration_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway probe` keeps the plugin convention: no configuration is UNKNOWN (3), not a
    CRITICAL that would page someone about the gateway."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    assert main(["probe"]) == 3
    assert capsys.readouterr().out.startswith("HEALTH UNKNOWN - no configuration")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["keygen"], ["certs", "dev", "--dir", "c"], ["check-config"]])
def test_commands_that_touch_no_store_need_no_configuration(tmp_path: Path,
                                                            args: list[str]) -> None:
    """keygen, certs dev and check-config work as documented with nothing configured, and
    none of them makes a store."""
    done = _gateway(tmp_path, *args)
    assert done.returncode in (0, 1), done.stderr   # check-config: 1 = problems listed
    assert "nothing was done" not in done.stderr
    assert not (tmp_path / "var").exists()


ENV_FILE = """\
# /etc/gateway/gateway.env, as systemd's EnvironmentFile= reads it
GATEWAY_GENERAL_TIMEZONE="UTC"
; a comment of the other kind
GATEWAY_STORE_SQLITE_PATH={db}
  GATEWAY_FAILOVER_INITIAL_MODE = standby
GATEWAY_FAILOVER_PILOT_GROUPS='6c1f0a2e-2b3c-4d5e-8f90-a1b2c3d4e5f6,\\
7d2e1b3f-3c4d-4e5f-9a01-b2c3d4e5f6a7'
"""


def test_env_file_names_the_store_before_or_after_the_subcommand(tmp_path: Path) -> None:
    """--env-file in systemd format works in either position; the store used is said on
    stderr with its absolute path; both runs act on the same store."""
    db = tmp_path / "state" / "g.db"
    db.parent.mkdir()
    env_file = tmp_path / "gateway.env"
    env_file.write_text(ENV_FILE.format(db=db))
    work = tmp_path / "work"
    work.mkdir()
    done = _gateway(work, "--env-file", str(env_file), "failover", "activate",
                    "--reason", "MDM down", "--by", "ops")
    assert done.returncode == 0, done.stderr
    assert f"store: SQLite {db} (settings from env file {env_file})" in done.stderr
    status = _gateway(work, "failover", "status", "--env-file", str(env_file))
    assert status.returncode == 0, status.stderr
    assert "mode:    active" in status.stdout and "by:      ops" in status.stdout
    assert db.exists() and list(work.iterdir()) == []


def test_calling_environment_overrides_the_env_file_and_says_so(tmp_path: Path) -> None:
    """A GATEWAY_* variable set for this one run wins over the file, with a note."""
    env_file = tmp_path / "gateway.env"
    env_file.write_text(f"GATEWAY_STORE_SQLITE_PATH={tmp_path / 'file.db'}\n"
                        "GATEWAY_STORE_SQLITE_PAHT=typo\n")
    other = tmp_path / "other.db"
    done = _gateway(tmp_path, "--env-file", str(env_file), "failover", "status",
                    GATEWAY_STORE_SQLITE_PATH=str(other))
    assert done.returncode == 0, done.stderr
    assert "GATEWAY_STORE_SQLITE_PATH from the environment overrides" in done.stderr
    assert f"store: SQLite {other}" in done.stderr
    assert "GATEWAY_STORE_SQLITE_PAHT is not a gateway setting" in done.stderr


def test_missing_env_file_is_a_clear_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong --env-file path exits 1 naming the file."""
    assert main(["--env-file", str(tmp_path / "nope.env"), "failover", "status"]) == 1
    assert "nope.env" in capsys.readouterr().err


def test_env_file_is_read_as_systemd_reads_it(tmp_path: Path) -> None:
    """The parser agrees with systemd's own (the environment.d generator shares systemd's
    env-file reader) on quotes, escapes, continuations, comments and blanks."""
    assert GENERATOR.exists(), "systemd is part of Debian; its generator must be there"
    text = ("A=plain value  \nB=\"double \\\" q\"\nC='single \\ x'\n# comment \\\nX=gone\n"
            ";semi\nD=cont\\\ninued\nnoequals\n  E = spaced\nF=\"multi\nline\"\n1BAD=x\n"
            "G=a\\b\nH=\"x\\qy\"\nI=\"x\" y\nJ='a'\"b\"c  \nL=  trailing\\ \nM=\"a\\\nb\"\n"
            "N=a#b ;c\nO=last")
    conf = tmp_path / "environment.d"
    conf.mkdir()
    (conf / "50-gateway.conf").write_text(text)
    out = subprocess.run([str(GENERATOR)], env={"XDG_CONFIG_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=10, check=True).stdout

    def unquote(v: str) -> str:
        if not (v.startswith('"') and v.endswith('"')):
            return v
        chars, i, body = [], 0, v[1:-1]
        while i < len(body):
            if body[i] == "\\":
                chars.append({"n": "\n", "t": "\t"}.get(body[i + 1], body[i + 1]))
                i += 2
            else:
                chars.append(body[i])
                i += 1
        return "".join(chars)
    systemd = {k: unquote(v) for k, _, v in (line.partition("=") for line in out.splitlines())}
    ours, warnings = parse_env_file(text)
    assert set(ours) == set("ABCDEFGHIJLMNO")
    assert {k: systemd.get(k) for k in ours} == ours
    assert any("1BAD" in w for w in warnings) and any("no '='" in w for w in warnings)


def test_postgres_dsn_is_shown_without_its_password() -> None:
    """The store line never carries a password, in URL or key=value form."""
    assert redact_dsn("postgresql://gw:s3cret@db.example:5432/gateway?sslmode=require") == \
        "postgresql://gw:***@db.example:5432/gateway?sslmode=require"
    assert "s3cret" not in redact_dsn("host=db user=gw password=s3cret dbname=gateway")
    assert redact_dsn("postgresql://db.example/gateway") == "postgresql://db.example/gateway"


def test_store_line_for_postgres_has_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """With a PostgreSQL DSN from a secret file, the command names the server, not the secret
    (the connection itself is refused: nothing listens there)."""
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://gw:s3cret@127.0.0.1:9/gateway\n")
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_STORE_BACKEND", "postgres")
    monkeypatch.setenv("GATEWAY_STORE_POSTGRES_DSN_FILE", str(secret))
    monkeypatch.setenv("GATEWAY_STORE_POSTGRES_TIMEOUT_SECONDS", "1")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "store: PostgreSQL postgresql://gw:***@127.0.0.1:9/gateway" in err
    assert "s3cret" not in err


def _printed_commands(path: Path) -> list[list[str]]:
    """The gateway commands in a document's indented code blocks (continuations joined;
    `gw` and `$G` are the documents' shorthands for `gateway --env-file ...`)."""
    import shlex

    lines, out = path.read_text().splitlines(), []
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        if not line.startswith("    "):
            continue
        words = shlex.split(line, comments=True)
        if words and words[0] in ("gw", "$G", "gateway"):
            out.append(words[1:])
    return out


@pytest.mark.parametrize("doc", ["README.md", "deploy/RUNBOOK.md", "docs/failover.md"])
def test_every_printed_command_parses(doc: str) -> None:
    """Each gateway command the README, the runbook and the failover guide print is one the
    command line accepts as written."""
    from gateway.cli.main import build_parser

    commands = _printed_commands(ROOT / doc)
    assert commands, f"no commands found in {doc}"
    for words in commands:
        try:
            build_parser().parse_args(words)
        except SystemExit as exc:
            raise AssertionError(f"{doc}: `gateway {' '.join(words)}` does not parse") from exc


def test_check_config_names_the_store_and_warns_without_a_configuration(tmp_path: Path) -> None:
    """check-config runs with nothing named but says those are only the built-in defaults;
    with --env-file it names the store the file gives."""
    bare = _gateway(tmp_path, "check-config")
    assert "warning: no configuration named" in bare.stderr
    assert "store: SQLite" in bare.stderr and "built-in defaults" in bare.stderr
    env_file = tmp_path / "gateway.env"
    env_file.write_text(f"GATEWAY_STORE_SQLITE_PATH={tmp_path / 'live.db'}\n")
    named = _gateway(tmp_path, "check-config", "--env-file", str(env_file))
    assert f"store: SQLite {tmp_path / 'live.db'} (settings from env file" in named.stderr
    assert "warning: no configuration" not in named.stderr
    assert not (tmp_path / "live.db").exists()
