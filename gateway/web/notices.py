"""Notices after an action ("Message sent", "Moved to Archive — Undo"), carried in the
redirect that follows the action, so they work without JavaScript and on every instance.

A notice travels as one query parameter, ``note``: a short JSON payload and an HMAC keyed
by the session's own secret, so a link made by someone else shows nothing, and a notice
older than a few minutes (a bookmark, a reload next day) shows nothing either. Its text is
chosen here from a fixed set; only folder names and counts come from the payload. An undo
is an ordinary CSRF-protected form posting the reverse move (the UIDs the server gave the
moved messages in their new folder), so nothing is kept on the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway.store.base import SessionRecord

MAX_AGE = 600.0  # seconds a notice stays showable after its action
MAX_UNDO = 200   # as many messages as one action moves

_MOVED = {"delete": "Moved to {dest}", "archive": "Moved to {dest}", "junk": "Moved to {dest}",
          "move": "Moved to {dest}", "undo": "Moved back to {dest}"}
_PLAIN = {
    "sent": "Message sent.",
    "draft-saved": "Your message was saved in Drafts.",
    "removed": "Deleted for good.",
    "read": "Marked as read.", "unread": "Marked as unread.",
    "flag": "Flagged.", "unflag": "Flag removed.",
    "emptied": "Emptied.",
    "none-chosen": "Choose at least one message first: tick the box beside each one.",
    "no-target": "Choose a folder to move to first.",
}
# Notices that say the member must do something, rather than that something happened.
ASKS = {"none-chosen", "no-target"}


@dataclass(frozen=True)
class Undo:
    folder: str          # where the messages are now
    target: str          # where they came from
    uids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Notice:
    text: str
    asks: bool = False
    undo: Undo | None = None


def _key(session: SessionRecord) -> bytes:
    return hashlib.sha256(b"gateway notice\0" + session.csrf_token.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(session: SessionRecord, now: float, kind: str, **fields: Any) -> str:
    payload = json.dumps({"k": kind, "t": int(now), **fields}, separators=(",", ":"),
                         ensure_ascii=False).encode()
    mac = hmac.new(_key(session), payload, hashlib.sha256).digest()[:16]
    return _b64(payload) + "." + _b64(mac)


def _payload(session: SessionRecord, token: str, now: float) -> dict[str, Any] | None:
    if not token or len(token) > 4000 or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except ValueError:
        return None
    want = hmac.new(_key(session), payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(want, given):
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or not 0 <= now - float(data.get("t", 0)) <= MAX_AGE:
        return None
    return data


def decode(session: SessionRecord | None, token: str | None, now: float) -> Notice | None:
    """The notice a ``note`` parameter carries, or None (absent, forged, stale, unknown)."""
    if session is None or not token:
        return None
    data = _payload(session, token, now)
    if data is None:
        return None
    kind = str(data.get("k", ""))
    if kind in _PLAIN:
        return Notice(_PLAIN[kind], asks=kind in ASKS)
    if kind not in _MOVED:
        return None
    n = int(data.get("n", 0) or 0)
    dest = str(data.get("dest", ""))[:200]
    what = "1 message" if n == 1 else f"{n} messages"
    text = _MOVED[kind].format(dest=dest or "the folder") + f" ({what})."
    uids = [u for u in data.get("uids", []) if isinstance(u, int) and u > 0][:MAX_UNDO]
    undo = None
    if kind != "undo" and uids and data.get("folder") and data.get("back"):
        undo = Undo(str(data["folder"])[:500], str(data["back"])[:500], uids)
    return Notice(text, undo=undo)


def with_note(url: str, token: str) -> str:
    """``url`` (a same-site path) with the notice added, any older notice replaced."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "note"] + [("note", token)]
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


def without_note(query: str) -> str:
    """A query string without its notice (for links back to the same page)."""
    return urlencode([(k, v) for k, v in parse_qsl(query) if k != "note"])
