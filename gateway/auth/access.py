"""Who may enter. Two questions, kept apart:

- entitlement (at sign-in): do the member's Entra app roles or groups make them a member or
  an ICT admin at all? Anyone else gets a refusal page and no session.
- admission (every request): may this signed-in person use the gateway in the current
  failover mode? ``AccessPolicy`` answers; the default admits every entitled person. The
  failover switch supplies its own policy through the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.config import Settings
from gateway.store.base import SessionRecord


@dataclass(frozen=True)
class Entitlement:
    member: bool
    admin: bool

    @property
    def any(self) -> bool:
        return self.member or self.admin


def entitlement(settings: Settings, roles: list[str], groups: list[str]) -> Entitlement:
    r, g = set(roles), set(groups)
    admin = bool(r & set(settings.access.admin_roles)
                 or g & set(settings.access.admin_groups))
    member = admin or bool(r & set(settings.access.member_roles)
                           or g & set(settings.access.member_groups))
    return Entitlement(member=member, admin=admin)


@dataclass(frozen=True)
class Admission:
    admitted: bool
    # When refused: what to show instead (a template name and a message for the member).
    template: str = ""
    message: str = ""


class AccessPolicy(Protocol):
    async def admit(self, session: SessionRecord, path: str) -> Admission: ...

    async def would_admit(self, session: SessionRecord) -> bool:
        """Would ``admit`` let this session in now? Asked ahead of any request (sign-in
        opens the member's mailbox only then); records nothing."""
        ...


class AdmitAll:
    """Every entitled, signed-in person is admitted (no failover switch wired in)."""

    async def admit(self, session: SessionRecord, path: str) -> Admission:
        return Admission(admitted=True)

    async def would_admit(self, session: SessionRecord) -> bool:
        return True
