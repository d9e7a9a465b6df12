"""The app registration the Entra stand-in plays, read from the shipped
``deploy/entra/manifest.json``, and the part of Microsoft's permission catalogue it needs to
understand it.

Entra decides what a token may carry from the registration's ``requiredResourceAccess`` (with
admin consent granted, and user consent off, as in most councils): a permission id counts only
under the resource service principal that publishes it. The stand-in reads the same file ICT
applies to the real tenant, so a wrong id or an id under the wrong resource fails in the dev
stack exactly as it would on the day (AADSTS65001 for the scope it should have granted).

Where the manifest is found: in a checkout (demo, tests) it is ``deploy/entra/manifest.json``;
in an installed wheel the same file is packaged as ``gateway/devstack/data/entra-manifest.json``
(a symbolic link in the source tree, copied as a file by the build), so there is one source.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"        # Microsoft Graph
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"     # Office 365 Exchange Online
GRAPH_RESOURCE = "https://graph.microsoft.com"
OUTLOOK_RESOURCE = "https://outlook.office.com"               # delegated IMAP/SMTP tokens
EXCHANGE_APP_RESOURCE = "https://outlook.office365.com"       # app-only IMAP/SMTP tokens
OIDC = ""                                                     # openid, profile, email, ...


@dataclass(frozen=True)
class Permission:
    """One permission as Microsoft publishes it: under which resource service principal
    (``resource_app_id``) it is listed, its id, its value, whether it is delegated
    (``Scope``) or an application permission (``Role``), and the audience of the tokens it
    lets Entra issue."""

    resource_app_id: str
    id: str
    value: str
    kind: str
    audience: str


# Sources: Microsoft Graph permissions reference (learn.microsoft.com/graph/permissions-reference)
# for the Graph ids, including the delegated IMAP.AccessAsUser.All and SMTP.Send that Microsoft
# lists under Microsoft Graph although their tokens are for https://outlook.office.com
# ("Authenticate an IMAP, POP or SMTP connection using OAuth", learn.microsoft.com/exchange/
# client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-
# oauth); the application permissions IMAP.AccessAsApp and SMTP.SendAsApp are app roles of the
# Office 365 Exchange Online service principal (same page, "client credentials grant flow"),
# ids as that service principal publishes them. deploy/entra/app-registration.md says which
# ids could not be checked against Microsoft's own listing.
CATALOGUE: tuple[Permission, ...] = (
    Permission(GRAPH_APP_ID, "37f7f235-527c-4136-accd-4a02d197296e", "openid", "Scope", OIDC),
    Permission(GRAPH_APP_ID, "14dad69e-099b-42c9-810b-d002981feec1", "profile", "Scope", OIDC),
    Permission(GRAPH_APP_ID, "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0", "email", "Scope", OIDC),
    Permission(GRAPH_APP_ID, "7427e0e9-2fba-42fe-b0c0-848c9e6a8182", "offline_access", "Scope",
               OIDC),
    Permission(GRAPH_APP_ID, "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "User.Read", "Scope",
               GRAPH_RESOURCE),
    Permission(GRAPH_APP_ID, "1ec239c2-d7c9-4623-a91a-a9775856bb36", "Calendars.ReadWrite",
               "Scope", GRAPH_RESOURCE),
    Permission(GRAPH_APP_ID, "465a38f9-76ea-45b9-9f34-9e8b0d4b0b42", "Calendars.Read", "Scope",
               GRAPH_RESOURCE),
    Permission(GRAPH_APP_ID, "818c620a-27a9-40bd-a6a5-d96f7d610b4b",
               "MailboxSettings.ReadWrite", "Scope", GRAPH_RESOURCE),
    Permission(GRAPH_APP_ID, "87f447af-9fa4-4c32-9dfa-4a57a73d18ce", "MailboxSettings.Read",
               "Scope", GRAPH_RESOURCE),
    Permission(GRAPH_APP_ID, "ba47897c-39ec-4d83-8086-ee8256fa737d", "People.Read", "Scope",
               GRAPH_RESOURCE),
    Permission(GRAPH_APP_ID, "652390e4-393a-48de-9484-05f9b1212954", "IMAP.AccessAsUser.All",
               "Scope", OUTLOOK_RESOURCE),
    Permission(GRAPH_APP_ID, "258f6531-6087-4cc4-bb90-092c5fb3ed3f", "SMTP.Send", "Scope",
               OUTLOOK_RESOURCE),
    Permission(GRAPH_APP_ID, "798ee544-9d2d-430c-a058-570e29e34338", "Calendars.Read", "Role",
               GRAPH_RESOURCE),
    Permission(GRAPH_APP_ID, "98830695-27a2-44f7-8c18-0c3ebc9698f6", "GroupMember.Read.All",
               "Role", GRAPH_RESOURCE),
    Permission(EXCHANGE_APP_ID, "5e5addcd-3e8d-4e90-baf5-964efab2b20a", "IMAP.AccessAsApp",
               "Role", EXCHANGE_APP_RESOURCE),
    Permission(EXCHANGE_APP_ID, "7146a1f0-8703-45b3-9eae-527a64c00995", "SMTP.SendAsApp",
               "Role", EXCHANGE_APP_RESOURCE),
)


@dataclass(frozen=True)
class Registration:
    """What the manifest grants, as Entra reads it."""

    granted: frozenset[Permission]
    email_optional_claim: bool
    group_claims: bool
    # ids Entra would not recognise under the resource they are listed under
    problems: tuple[str, ...] = field(default=())

    def delegated(self, audience: str) -> tuple[str, ...]:
        """The delegated permission values granted for tokens to ``audience``."""
        return tuple(p.value for p in _ordered(self.granted)
                     if p.kind == "Scope" and p.audience == audience)

    def app_roles(self, audience: str) -> tuple[str, ...]:
        return tuple(p.value for p in _ordered(self.granted)
                     if p.kind == "Role" and p.audience == audience)

    def grants_oidc(self, name: str) -> bool:
        return name in self.delegated(OIDC)

    @property
    def email_claim(self) -> bool:
        # The portal's Token configuration says the email optional claim needs the Microsoft
        # Graph `email` permission "for claims to appear in token": without it, no claim.
        return self.grants_oidc("email")


def _ordered(perms: Iterable[Permission]) -> list[Permission]:
    order = {p: i for i, p in enumerate(CATALOGUE)}
    return sorted(perms, key=lambda p: order.get(p, len(order)))


def parse_manifest(manifest: dict[str, Any]) -> Registration:
    by_key = {(p.resource_app_id, p.id.lower(), p.kind): p for p in CATALOGUE}
    known_ids = {p.id.lower(): p for p in CATALOGUE}
    granted: set[Permission] = set()
    problems: list[str] = []
    for block in manifest.get("requiredResourceAccess") or []:
        resource = str(block.get("resourceAppId") or "").lower()
        for access in block.get("resourceAccess") or []:
            pid, kind = str(access.get("id") or "").lower(), str(access.get("type") or "")
            perm = by_key.get((resource, pid, kind))
            if perm is not None:
                granted.add(perm)
                continue
            elsewhere = known_ids.get(pid)
            if elsewhere is not None:
                problems.append(
                    f"{elsewhere.value} ({pid}) is listed under {resource} as {kind}, but "
                    f"Microsoft publishes it under {elsewhere.resource_app_id} as "
                    f"{elsewhere.kind}: Entra does not grant it")
            else:
                problems.append(f"{pid} under {resource} is not a permission this stand-in "
                                "knows: it grants nothing")
    id_claims = {str(c.get("name")) for c in
                 (manifest.get("optionalClaims") or {}).get("idToken") or []}
    return Registration(frozenset(granted), "email" in id_claims,
                        bool(manifest.get("groupMembershipClaims")), tuple(problems))


def manifest_path() -> Path:
    """The shipped manifest: the checkout's deploy/entra/manifest.json when running from a
    source tree, else the copy packaged with the wheel."""
    checkout = Path(__file__).resolve().parents[2] / "deploy" / "entra" / "manifest.json"
    if checkout.is_file():
        return checkout
    packaged = resources.files("gateway.devstack").joinpath("data/entra-manifest.json")
    return Path(str(packaged))


def load_registration(path: Path | None = None) -> Registration:
    path = path or manifest_path()
    reg = parse_manifest(json.loads(path.read_text(encoding="utf-8")))
    for problem in reg.problems:
        log.warning("entra stand-in: app registration: %s", problem)
    return reg
