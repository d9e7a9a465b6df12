"""The dev stack's sample people: who can sign in to the Entra stand-in, whose mailboxes
Dovecot holds, and what roles and groups each carries. One list, used by every stand-in, the
seeder, the demo banner and the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

TENANT_ID = "9a7b1c2d-0e1f-4a5b-8c6d-7e8f9a0b1c2d"
CLIENT_ID = "3f2e1d0c-b9a8-4765-8432-10fedcba9876"
# Not a secret: the dev stand-in accepts it and nothing else does.
DEV_CLIENT_SECRET = "dev-stack-client-secret"  # noqa: S105
DOMAIN = "council.example"
PILOT_GROUP = "6c1f0a2e-2b3c-4d5e-8f90-a1b2c3d4e5f6"
DRILL_GROUP = "7d2e1b3f-3c4d-4e5f-9a01-b2c3d4e5f6a7"
# A group that exists in the directory but has nobody in it yet (a drill set up too early).
EMPTY_GROUP = "8e3f2c4a-4d5e-4f6a-8b12-c3d4e5f6a7b8"
# The directory's groups (object id -> display name); members are the USERS that carry them.
GROUPS: dict[str, str] = {
    PILOT_GROUP: "Mail gateway pilot (ICT)",
    DRILL_GROUP: "Mail gateway drill: members",
    EMPTY_GROUP: "Mail gateway drill: next quarter",
}
# Entra puts at most 200 groups in a JWT; beyond that it sends an overage indicator instead.
GROUP_CLAIM_LIMIT = 200
OVERAGE_GROUPS = tuple(f"8e3f2c4a-4d5e-4f60-9b12-{n:012x}" for n in range(1, 251))


@dataclass(frozen=True)
class SampleUser:
    key: str            # short handle used in tests: "member", "admin", "norole", ...
    oid: str            # Entra object id
    name: str
    email: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = field(default=())
    # Behind a conditional-access policy that wants MFA for Microsoft Graph: the first silent
    # Graph token answers interaction_required with a claims challenge (AADSTS50076) until the
    # member signs in again with those claims.
    step_up: bool = False
    # Whether the seeder fills the mailbox (the special-purpose users' stay empty, which also
    # keeps every stack start as quick as before they existed).
    seed_mail: bool = True

    @property
    def upn(self) -> str:
        return self.email


USERS: tuple[SampleUser, ...] = (
    SampleUser("member", "11111111-1111-4111-8111-111111111111", "Cllr Alex Morgan",
               f"alex.morgan@{DOMAIN}", roles=("Gateway.Member",)),
    SampleUser("admin", "22222222-2222-4222-8222-222222222222", "Priya Shah (ICT)",
               f"priya.shah@{DOMAIN}", roles=("Gateway.Admin", "Gateway.Member"),
               groups=(PILOT_GROUP,)),
    SampleUser("norole", "33333333-3333-4333-8333-333333333333", "Sam Taylor",
               f"sam.taylor@{DOMAIN}"),
    SampleUser("member2", "44444444-4444-4444-8444-444444444444", "Cllr Jo Evans",
               f"jo.evans@{DOMAIN}", roles=("Gateway.Member",), groups=(DRILL_GROUP,)),
    SampleUser("canary", "55555555-5555-4555-8555-555555555555", "Gateway Canary",
               f"gateway.canary@{DOMAIN}"),
    SampleUser("stepup", "66666666-6666-4666-8666-666666666666", "Cllr Dana Hughes",
               f"dana.hughes@{DOMAIN}", roles=("Gateway.Member",), step_up=True,
               seed_mail=False),
    # In more than 200 groups: Entra leaves `groups` out of the ID token (overage) and points
    # at Graph instead. The pilot group is one of the many: a pilot or drill admits them only
    # if the gateway resolves their groups through Graph.
    SampleUser("overage", "77777777-7777-4777-8777-777777777777", "Cllr Chris Owen",
               f"chris.owen@{DOMAIN}", roles=("Gateway.Member",),
               groups=(*OVERAGE_GROUPS[:120], PILOT_GROUP, *OVERAGE_GROUPS[120:]),
               seed_mail=False),
)


def user(key: str) -> SampleUser:
    for u in USERS:
        if u.key == key:
            return u
    raise KeyError(key)


def by_oid(oid: str) -> SampleUser | None:
    return next((u for u in USERS if u.oid == oid), None)


def by_email(email: str) -> SampleUser | None:
    return next((u for u in USERS if u.email.lower() == email.lower()), None)


def members_of(group_id: str) -> list[SampleUser]:
    return [u for u in USERS if group_id.lower() in (g.lower() for g in u.groups)]
