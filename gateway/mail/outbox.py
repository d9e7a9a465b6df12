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
# Long enough for one SMTP exchange with a large message; a sender that died frees the
# message after this.
SEND_LEASE = 180.0


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


class Outbox:
    def __init__(self, store: Store, keyring: KeyRing) -> None:
        self.store = store
        self.keyring = keyring

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(16)

    def _context(self, outbox_id: str, user_oid: str) -> bytes:
        return f"outbox:{user_oid}:{outbox_id}".encode()

    async def save(self, outbox_id: str, user_oid: str, draft: Draft, state: str,
                   now: float) -> None:
        existing = await self.store.get_outbox(outbox_id, user_oid)
        blob = self.keyring.encrypt(_encode(draft), self._context(outbox_id, user_oid))
        await self.store.put_outbox(OutboxRecord(
            outbox_id, user_oid, blob, state, existing.created_at if existing else now, now))

    async def load(self, outbox_id: str, user_oid: str) -> Draft | None:
        rec = await self.store.get_outbox(outbox_id, user_oid)
        if rec is None:
            return None
        try:
            return _decode(self.keyring.decrypt(rec.blob, self._context(outbox_id, user_oid)))
        except (DecryptError, ValueError, KeyError, TypeError):
            return None

    async def discard(self, outbox_id: str, user_oid: str) -> None:
        await self.store.delete_outbox(outbox_id, user_oid)

    async def state(self, outbox_id: str, user_oid: str) -> str | None:
        rec = await self.store.get_outbox(outbox_id, user_oid)
        return rec.state if rec else None

    async def claim(self, outbox_id: str, user_oid: str, now: float) -> bool:
        """This instance may send the message (nobody else is sending it now)."""
        return await self.store.claim_outbox(outbox_id, user_oid, now, SEND_LEASE) is not None

    async def release(self, outbox_id: str, user_oid: str) -> None:
        await self.store.release_outbox(outbox_id, user_oid)

    async def mark_sent(self, outbox_id: str, user_oid: str, now: float) -> None:
        """Keep only a content-free marker, so that a second press of Send (a double tap, a
        resubmitted form, another instance) is recognised and not sent again."""
        await self.save(outbox_id, user_oid, Draft(), "sent", now)
