"""``gateway check-tenant`` against the dev stack's stand-ins: all pass on a healthy stack,
and each broken configuration fails on its own line with its fix; exit codes as ``gateway
probe``. Run through the real command line (settings file, parser, exit code)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.devstack.registration import CATALOGUE, parse_manifest
from gateway.devstack.stack import DevStack
from gateway.devstack.users import user

CANARY = user("canary").email
CHECKS = ["Entra discovery", "App credentials", "Canary app token", "Canary IMAP login",
          "Canary SMTP AUTH", "Graph calendar", "Certificates", "Clock"]


@pytest.fixture(scope="module")
def tenant(loop_thread: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """A stack whose Exchange stand-in lets the app's service principal into the canary."""
    s = DevStack(tmp_path_factory.mktemp("tenant"), seed_messages=0, app_mailboxes=(CANARY,))
    loop_thread.run(s.start())
    yield s
    loop_thread.run(s.stop())


def run(stack: DevStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        **overrides: Any) -> tuple[int, dict[str, tuple[str, str, str]], str]:
    overrides.setdefault("health__canary_mailbox", CANARY)
    settings = stack.gateway_settings(8443, **overrides)
    conf = tmp_path / "gateway.toml"
    conf.write_text(settings.to_toml())
    code = main(["--config", str(conf), "check-tenant"])
    out = capsys.readouterr().out
    lines: dict[str, tuple[str, str, str]] = {}
    last = ""
    for text in out.splitlines():
        if text[:4] in ("PASS", "WARN", "FAIL"):
            last = text[6:24].strip()
            lines[last] = (text[:4], text[24:].strip(), "")
        elif text.strip().startswith("fix:"):
            status, detail, _ = lines[last]
            lines[last] = (status, detail, text.strip()[5:])
    return code, lines, out


def test_healthy_tenant_passes_every_line(tenant: DevStack, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, out = run(tenant, tmp_path, capsys)
    assert list(lines) == CHECKS, out
    assert all(status == "PASS" for status, _, _ in lines.values()), out
    assert code == 0 and out.rstrip().endswith("TENANT OK - 8 pass, 0 warn, 0 fail")
    assert "nothing sent" in lines["Canary SMTP AUTH"][1]
    for token in tenant.signer.issued:
        assert token not in out


def test_wrong_client_secret_names_the_fix(tenant: DevStack, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _out = run(tenant, tmp_path, capsys, entra__client_secret="not-the-secret")
    assert code == 2
    status, detail, fix = lines["App credentials"]
    assert status == "FAIL" and "AADSTS7000215" in detail and "Value" in fix
    assert lines["Canary IMAP login"][0] == "FAIL" and "not checked" in lines[
        "Canary IMAP login"][1]
    assert lines["Entra discovery"][0] == "PASS"


def test_entra_down_fails_discovery(tenant: DevStack, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    tenant.entra.set_fault("error")
    try:
        code, lines, _out = run(tenant, tmp_path, capsys)
    finally:
        tenant.entra.set_fault(None)
    assert code == 2
    status, detail, fix = lines["Entra discovery"]
    assert status == "FAIL" and "HTTP 503" in detail and fix


def test_missing_application_permission_is_named(tenant: DevStack, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The registration without SMTP.SendAsApp: the token line names it and how to add it."""
    names = {p.id: p.value for p in CATALOGUE}
    from gateway.devstack.registration import manifest_path
    manifest = json.loads(manifest_path().read_text())
    for block in manifest["requiredResourceAccess"]:
        block["resourceAccess"] = [a for a in block["resourceAccess"]
                                   if names.get(a["id"]) != "SMTP.SendAsApp"]
    shipped = tenant.entra.registration
    tenant.entra.registration = parse_manifest(manifest)
    try:
        code, lines, _out = run(tenant, tmp_path, capsys)
    finally:
        tenant.entra.registration = shipped
    assert code == 2
    status, detail, fix = lines["Canary app token"]
    assert status == "FAIL" and "SMTP.SendAsApp" in detail
    assert "Office 365 Exchange Online" in fix and "admin consent" in fix


def test_canary_without_mailbox_access_gets_the_exchange_commands(
    tenant: DevStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A canary the service principal may not open: IMAP and SMTP fail with the Exchange
    Online PowerShell that fixes it."""
    other = user("member2").email
    code, lines, out = run(tenant, tmp_path, capsys, health__canary_mailbox=other)
    assert code == 2
    for check in ("Canary IMAP login", "Canary SMTP AUTH"):
        status, detail, fix = lines[check]
        assert status == "FAIL" and other in detail, out
        assert "New-ServicePrincipal" in fix and "Add-MailboxPermission" in fix


def test_graph_down_fails_its_line(tenant: DevStack, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    tenant.graph.unavailable(count=5)
    try:
        code, lines, _out = run(tenant, tmp_path, capsys)
    finally:
        tenant.graph.reset()
    assert code == 2 and lines["Graph calendar"][0] == "FAIL"
    assert lines["Canary IMAP login"][0] == "PASS"


def test_no_canary_is_a_warning_not_a_pass(tenant: DevStack, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _out = run(tenant, tmp_path, capsys, health__canary_mailbox="")
    assert code == 1
    assert lines["Canary IMAP login"][0] == "WARN" and "health.canary_mailbox" in lines[
        "Canary IMAP login"][2]


def test_no_configuration_is_unknown(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(key)
    assert main(["check-tenant"]) == 3
    assert capsys.readouterr().out.startswith("TENANT UNKNOWN")
