"""The outbox: what a member is writing, kept encrypted in the store from the moment they
press Send or Save until the message is safely sent or saved in Drafts.

A bad address, an SMTP refusal, a dropped connection or an expired sign-in therefore never
loses the text or the attachments: the compose page is shown again from the outbox record.
Records are encrypted with the key ring, bound to the member (associated data), and live
at most ``MAX_AGE`` seconds.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import asdict, dataclass, field

from gateway.crypto import DecryptError, KeyRing
from gateway.store.base import OutboxRecord, Store

MAX_AGE = 7 * 86400.0
# The claim on a message being sent: longer than a send may take (smtp.send_deadline_seconds,
# enforced in gateway.mail.smtp), plus a margin for clocks between instances; a sender that
# died frees the message after this. SEND_LEASE is the default's.
def lease_for(send_deadline: float) -> float:
    return send_deadline + max(5.0, send_deadline * 0.2)


SEND_LEASE = lease_for(150.0)
# What each state means to the member (the Outbox page). "compose" is a message being
# written (its copy is in Drafts) and "sent" a content-free marker: neither is listed.
STATES = {
    "failed": "Not sent: the send failed.",
    "unknown": "Perhaps sent: the mail server did not confirm it. Look in Sent Items.",
    "held": "Held: an earlier try may have gone and Sent Items could not be checked.",
    "parked": "Kept when your sign-in expired: not sent yet.",
    "sending": "Being sent, or sending was cut off. Send checks Sent Items first, so it "
               "cannot go twice.",
}


@dataclass
class HeldFile:
    name: str
    content_type: str
    data: bytes


@dataclass
class Draft:
    """Everything on the compose form."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    mode: str = "new"                 # new | reply | replyall | forward | draft
    orig_folder: str = ""
    orig_uid: int = 0
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    draft_uid: int = 0                # the copy in Drafts, replaced on each save
    files: list[HeldFile] = field(default_factory=list)
    # Attachments of the original (forward, reopened draft) the member kept: part ids.
    keep_parts: list[str] = field(default_factory=list)
    attempts: int = 0                 # sends tried; after one, check Sent Items first

    def total_bytes(self) -> int:
        return sum(len(f.data) for f in self.files)


def _encode(d: Draft) -> bytes:
    body = asdict(d)
    body["files"] = [{"name": f.name, "content_type": f.content_type,
                      "data": base64.b64encode(f.data).decode()} for f in d.files]
    return json.dumps(body).encode()


def _decode(raw: bytes) -> Draft:
    body = json.loads(raw)
    files = [HeldFile(f["name"], f["content_type"], base64.b64decode(f["data"]))
             for f in body.pop("files", [])]
    return Draft(**body, files=files)


@dataclass(frozen=True)
class Kept:
    """A message in the member's Outbox, as the Outbox page lists it."""

    id: str
    state: str            # a key of STATES
    draft: Draft
    updated_at: float
    expires_at: float


class Outbox:
    """The members' kept messages in the store. ``remember=True`` is for one request: the
    records it read or wrote are remembered, so that reading a message's state and content
    and then saving it asks the store once, not three times. A long-lived Outbox (the purge
    task) must not remember: other instances change the records."""

    def __init__(self, store: Store, keyring: KeyRing, lease: float = SEND_LEASE,
                 remember: bool = False) -> None:
        self.store = store
        self.keyring = keyring
        self.lease = lease
        self.remember = remember
        self._seen: dict[tuple[str, str], OutboxRecord | None] = {}

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(16)

    def _context(self, outbox_id: str, user_oid: str) -> bytes:
        return f"outbox:{user_oid}:{outbox_id}".encode()

    async def _record(self, outbox_id: str, user_oid: str) -> OutboxRecord | None:
        key = (outbox_id, user_oid)
        if self.remember and key in self._seen:
            return self._seen[key]
        rec = await self.store.get_outbox(outbox_id, user_oid)
        if self.remember:
            self._seen[key] = rec
        return rec

    async def save(self, outbox_id: str, user_oid: str, draft: Draft, state: str,
                   now: float) -> None:
        existing = await self._record(outbox_id, user_oid)
        blob = self.keyring.encrypt(_encode(draft), self._context(outbox_id, user_oid))
        rec = OutboxRecord(outbox_id, user_oid, blob, state,
                           existing.created_at if existing else now, now)
        await self.store.put_outbox(rec)
        if self.remember:
            self._seen[(outbox_id, user_oid)] = rec

    async def load(self, outbox_id: str, user_oid: str) -> Draft | None:
        rec = await self._record(outbox_id, user_oid)
        if rec is None:
            return None
        try:
            return _decode(self.keyring.decrypt(rec.blob, self._context(outbox_id, user_oid)))
        except (DecryptError, ValueError, KeyError, TypeError):
            return None

    async def discard(self, outbox_id: str, user_oid: str) -> None:
        self._seen.pop((outbox_id, user_oid), None)
        await self.store.delete_outbox(outbox_id, user_oid)

    async def state(self, outbox_id: str, user_oid: str) -> str | None:
        rec = await self._record(outbox_id, user_oid)
        return rec.state if rec else None

    async def claim(self, outbox_id: str, user_oid: str, now: float) -> bool:
        """This instance may send the message (nobody else is sending it now)."""
        return await self.store.claim_outbox(outbox_id, user_oid, now, self.lease) is not None

    async def release(self, outbox_id: str, user_oid: str) -> None:
        await self.store.release_outbox(outbox_id, user_oid)

    async def mark_sent(self, outbox_id: str, user_oid: str, now: float) -> None:
        """Keep only a content-free marker, so that a second press of Send (a double tap, a
        resubmitted form, another instance) is recognised and not sent again."""
        await self.save(outbox_id, user_oid, Draft(), "sent", now)

    async def kept(self, user_oid: str) -> list[Kept]:
        """Messages kept after a failure (rule: a message is never lost; it comes back or
        stays in a listed outbox). Plain drafts being written are in Drafts, not here."""
        out = []
        for rec in await self.store.list_outbox(user_oid):
            if rec.state not in STATES:
                continue
            draft = await self.load(rec.id, user_oid)
            if draft is not None:
                out.append(Kept(rec.id, rec.state, draft, rec.updated_at,
                                rec.created_at + MAX_AGE))
        return out

    async def purge(self, now: float) -> int:
        """Remove records past MAX_AGE (encrypted drafts, failed sends and sent markers)."""
        return await self.store.purge_outbox(now - MAX_AGE, now)
