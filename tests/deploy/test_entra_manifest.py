"""The Entra app registration ICT applies: every permission id sits under the resource
Microsoft lists it under, with the right type, and covers every scope the gateway asks for.
The table below is Microsoft's listing, kept here independently of the stand-in's catalogue
(a mistake copied into both would otherwise pass)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from gateway.config import load_settings
from gateway.devstack.registration import load_registration, manifest_path, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "entra" / "manifest.json"
GRAPH = "00000003-0000-0000-c000-000000000000"
EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"

# id -> (resource service principal, value, type, source)
GRAPH_REF = "Microsoft Graph permissions reference, learn.microsoft.com/graph/permissions-reference"
EXO_REF = ("Office 365 Exchange Online service principal appRoles, as published in the tenant "
           "(learn.microsoft.com/exchange/client-developer/legacy-protocols/"
           "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth)")
MICROSOFT: dict[str, tuple[str, str, str, str]] = {
    "37f7f235-527c-4136-accd-4a02d197296e": (GRAPH, "openid", "Scope", GRAPH_REF),
    "14dad69e-099b-42c9-810b-d002981feec1": (GRAPH, "profile", "Scope", GRAPH_REF),
    "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0": (GRAPH, "email", "Scope", GRAPH_REF),
    "7427e0e9-2fba-42fe-b0c0-848c9e6a8182": (GRAPH, "offline_access", "Scope", GRAPH_REF),
    "e1fe6dd8-ba31-4d61-89e7-88639da4683d": (GRAPH, "User.Read", "Scope", GRAPH_REF),
    "1ec239c2-d7c9-4623-a91a-a9775856bb36": (GRAPH, "Calendars.ReadWrite", "Scope", GRAPH_REF),
    "818c620a-27a9-40bd-a6a5-d96f7d610b4b": (GRAPH, "MailboxSettings.ReadWrite", "Scope",
                                             GRAPH_REF),
    "ba47897c-39ec-4d83-8086-ee8256fa737d": (GRAPH, "People.Read", "Scope", GRAPH_REF),
    # Listed by Microsoft under Microsoft Graph -> Delegated, although the tokens are asked for
    # as https://outlook.office.com/IMAP.AccessAsUser.All and .../SMTP.Send.
    "652390e4-393a-48de-9484-05f9b1212954": (GRAPH, "IMAP.AccessAsUser.All", "Scope",
                                             GRAPH_REF),
    "258f6531-6087-4cc4-bb90-092c5fb3ed3f": (GRAPH, "SMTP.Send", "Scope", GRAPH_REF),
    "798ee544-9d2d-430c-a058-570e29e34338": (GRAPH, "Calendars.Read", "Role", GRAPH_REF),
    "98830695-27a2-44f7-8c18-0c3ebc9698f6": (GRAPH, "GroupMember.Read.All", "Role", GRAPH_REF),
    "5e5addcd-3e8d-4e90-baf5-964efab2b20a": (EXCHANGE, "IMAP.AccessAsApp", "Role", EXO_REF),
    "7146a1f0-8703-45b3-9eae-527a64c00995": (EXCHANGE, "SMTP.SendAsApp", "Role", EXO_REF),
}


def _entries(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(block["resourceAppId"], a["id"], a["type"])
            for block in manifest["requiredResourceAccess"] for a in block["resourceAccess"]]


def test_every_permission_sits_under_the_resource_microsoft_lists_it_under() -> None:
    manifest = json.loads(MANIFEST.read_text())
    entries = _entries(manifest)
    assert len(entries) == len({e[1] for e in entries}), "a permission is listed twice"
    for resource, pid, kind in entries:
        assert pid in MICROSOFT, f"{pid} is not in the reference table"
        want_resource, value, want_kind, _ = MICROSOFT[pid]
        assert (resource, kind) == (want_resource, want_kind), \
            f"{value} ({pid}) must be under {want_resource} as {want_kind}"


def test_manifest_covers_what_the_gateway_asks_for() -> None:
    """Delegated: sign-in, mail, calendar and the email claim the optional claim asks for;
    People.Read and MailboxSettings.ReadWrite for the pages that use them; the canary's
    application permissions."""
    manifest = json.loads(MANIFEST.read_text())
    values = {(MICROSOFT[pid][1], kind) for _, pid, kind in _entries(manifest)}
    settings = load_settings(environ={})
    asked = [scope.rpartition("/")[2] for scope in (
        settings.entra.imap_scope, settings.entra.smtp_scope, settings.entra.graph_scope)]
    for name in [*asked, "openid", "profile", "offline_access", "email", "User.Read",
                 "People.Read", "MailboxSettings.ReadWrite"]:
        assert (name, "Scope") in values, name
    for name in ("IMAP.AccessAsApp", "SMTP.SendAsApp", "Calendars.Read", "GroupMember.Read.All"):
        assert (name, "Role") in values, name
    claims = {c["name"] for c in manifest["optionalClaims"]["idToken"]}
    assert "email" in claims and ("email", "Scope") in values


def test_stand_in_reads_the_shipped_manifest_and_finds_no_problem() -> None:
    reg = load_registration()
    assert manifest_path().resolve() == MANIFEST.resolve()
    assert reg.problems == ()
    assert reg.delegated("https://outlook.office.com") == ("IMAP.AccessAsUser.All", "SMTP.Send")
    assert reg.email_claim


def test_old_manifest_is_seen_as_entra_would_see_it() -> None:
    """The manifest as first shipped (IMAP/SMTP under Exchange Online) grants no mail scope."""
    manifest = json.loads(MANIFEST.read_text())
    for block in manifest["requiredResourceAccess"]:
        block["resourceAccess"] = [a for a in block["resourceAccess"]
                                   if MICROSOFT[a["id"]][1] not in ("IMAP.AccessAsUser.All",
                                                                    "SMTP.Send", "email")]
    manifest["requiredResourceAccess"].append({"resourceAppId": EXCHANGE, "resourceAccess": [
        {"id": "652390e4-393a-48de-9484-05f9b1212954", "type": "Scope"},
        {"id": "258f6531-6087-4cc4-bb90-092c5fb3ed3f", "type": "Scope"}]})
    reg = parse_manifest(manifest)
    assert reg.delegated("https://outlook.office.com") == ()
    assert not reg.email_claim
    assert len(reg.problems) == 2 and all("Microsoft publishes it under " + GRAPH in p
                                          for p in reg.problems)


def test_wheel_carries_the_manifest(tmp_path: Path) -> None:
    """An installed gateway (no checkout beside it) still finds the manifest: the wheel holds
    the same bytes as deploy/entra/manifest.json. Built from a copy of the source, so the
    build leaves nothing in the checkout."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "gateway", src / "gateway", symlinks=True, ignore=ignore)
    (src / "deploy" / "entra").mkdir(parents=True)
    shutil.copy(MANIFEST, src / "deploy" / "entra" / "manifest.json")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "-q", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("gateway-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("gateway/devstack/data/entra-manifest.json") == MANIFEST.read_bytes()
