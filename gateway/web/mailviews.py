"""View models for the mail pages, and the formatting rules members see (dates in the
council's time zone, sizes, sender names). Templates get these dataclasses, never IMAP data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import lru_cache
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

from markupsafe import Markup

from gateway.mail.mailbox import Folder, MessageSummary
from gateway.mail.mime import AttachmentInfo, CalendarInvite

# PDF and raster images open in Safari's own viewer; everything else downloads, so that
# iPadOS offers Quick Look for Office documents. SVG is never inline: it can carry script.
INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"}
OFFICE_TYPES = {
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "text/csv", "text/plain", "application/zip", "text/calendar",
}


# What members call a file, not its MIME type (issue 13 item 13). Types not listed fall
# back to their family ("Image", "Text file") or, failing that, "File".
KIND_NAMES = {
    "application/pdf": "PDF",
    "application/msword": "Word document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word document",
    "application/vnd.ms-word.document.macroenabled.12": "Word document",
    "application/rtf": "Word document",
    "application/vnd.ms-excel": "Excel spreadsheet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel spreadsheet",
    "application/vnd.ms-excel.sheet.macroenabled.12": "Excel spreadsheet",
    "application/vnd.ms-powerpoint": "PowerPoint presentation",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation":
        "PowerPoint presentation",
    "application/vnd.ms-outlook": "Outlook message",
    "message/rfc822": "Email message",
    "text/calendar": "Calendar invitation",
    "text/csv": "CSV spreadsheet",
    "text/plain": "Text file",
    "text/html": "Web page",
    "application/zip": "Zip archive",
    "application/x-zip-compressed": "Zip archive",
}
KIND_FAMILIES = {"image": "Image", "audio": "Audio", "video": "Video", "text": "Text file"}


def kind_name(content_type: str) -> str:
    """'Word document' for a .docx, 'Image' for any image, 'File' when we cannot say."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in KIND_NAMES:
        return KIND_NAMES[ctype]
    return KIND_FAMILIES.get(ctype.split("/", 1)[0], "File")


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def short_date(when: datetime | None, tz: ZoneInfo, now: datetime) -> str:
    """'14:05' today, '27 Nov' this year, '27 Nov 2025' before."""
    if when is None:
        return ""
    return _short_date(when, tz, now.astimezone(tz).date())


# A list page shows the same kept summaries page after page: each date is worked out once
# per day and zone (zone conversion and strftime were 5 % of a steady inbox page's CPU).
@lru_cache(maxsize=8192)
def _short_date(when: datetime, tz: ZoneInfo, today: date) -> str:
    local = when.astimezone(tz) if when.tzinfo else when.replace(tzinfo=tz)
    if local.date() == today:
        return local.strftime("%H:%M")
    if local.year == today.year:
        return f"{local.day} {local.strftime('%b')}"
    return f"{local.day} {local.strftime('%b %Y')}"


def day_group(when: datetime | None, tz: ZoneInfo, now: datetime) -> str:
    """The heading a message sits under in the list, by its day in ``tz``: "Today",
    "Yesterday", a weekday for the last week, else the date. Days are compared as calendar
    dates in the zone, so a clock change (a 23- or 25-hour day) moves nothing."""
    if when is None:
        return "Undated"
    return _day_group(when, tz, now.astimezone(tz).date())


# Kept per day and zone as _short_date is: the zone conversion and strftime here were 9 % of
# a steady inbox page's CPU (bench/cpu_per_page.py --profile, 2026-12-03).
@lru_cache(maxsize=8192)
def _day_group(when: datetime, tz: ZoneInfo, today: date) -> str:
    local = (when.astimezone(tz) if when.tzinfo else when.replace(tzinfo=tz)).date()
    days = (today - local).days
    if days == 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if 1 < days < 7:
        return local.strftime("%A")
    if local.year == today.year:
        return f"{local.strftime('%A')} {local.day} {local.strftime('%B')}"
    return f"{local.day} {local.strftime('%B %Y')}"


def long_date(when: datetime | None, tz: ZoneInfo) -> str:
    if when is None:
        return ""
    local = when.astimezone(tz) if when.tzinfo else when.replace(tzinfo=tz)
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b %Y, %H:%M')}"


def folder_url(folder: str, page: int = 1) -> str:
    q = {"f": folder} if page == 1 else {"f": folder, "page": str(page)}
    return "/mail?" + urlencode(q)


def message_url(folder: str, uid: int, **extra: str) -> str:
    if not extra:
        return _read_url(folder, uid)
    return "/mail/read?" + urlencode({"f": folder, "uid": str(uid), **extra})


@lru_cache(maxsize=8192)
def _read_url(folder: str, uid: int) -> str:
    return "/mail/read?" + urlencode({"f": folder, "uid": str(uid)})


def draft_url(read_url: str) -> str:
    """The compose form editing the draft that ``read_url`` (a message_url) opens."""
    q = parse_qs(urlsplit(read_url).query)
    return "/mail/compose?" + urlencode({"mode": "draft", "f": q["f"][0], "uid": q["uid"][0]})


def draft_rows(rows: list[Row]) -> list[Row]:
    """In Drafts a message opens to be edited, as in every mail app."""
    return [replace(r, url=draft_url(r.url)) for r in rows]


@dataclass(frozen=True)
class FolderLink:
    name: str
    label: str
    depth: int
    unseen: int
    total: int
    special: str | None
    url: str
    current: bool


def folder_links(folders: list[Folder], current: str) -> list[FolderLink]:
    return [FolderLink(f.name, f.label, f.depth, f.unseen, f.total, f.special,
                       folder_url(f.name), f.name == current)
            for f in folders if f.selectable]


@dataclass(frozen=True)
class Row:
    uid: int
    url: str
    sender: str
    subject: str
    date: str
    unread: bool
    flagged: bool
    answered: bool
    has_attachment: bool
    size: str
    preview: str = ""
    group: str = ""      # the day heading ("Today", "Yesterday", ...): see day_group


@dataclass(frozen=True)
class DayGroup:
    """The rows under one day heading; ``key`` makes the heading's id."""

    key: int
    label: str
    rows: list[Row]


def day_groups(rows: list[Row]) -> list[DayGroup]:
    """Consecutive rows of one day under one heading (the list is newest first)."""
    groups: list[DayGroup] = []
    for r in rows:
        if not groups or groups[-1].label != r.group:
            groups.append(DayGroup(len(groups) + 1, r.group, []))
        groups[-1].rows.append(r)
    return groups


# What is rendered of a subject (issue 14 case 10: a 1 MiB subject stretched the page);
# the list cuts it with an ellipsis anyway, the message view shows a paragraph's worth.
LIST_SUBJECT_CHARS = 300
PAGE_SUBJECT_CHARS = 1_000


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def rows(folder: str, messages: list[MessageSummary], tz: ZoneInfo, now: datetime,
         folder_of: dict[int, str] | None = None) -> list[Row]:
    out = []
    for m in messages:
        f = folder_of.get(m.uid, folder) if folder_of else folder
        out.append(Row(m.uid, message_url(f, m.uid), bounded(m.sender, LIST_SUBJECT_CHARS),
                       bounded(m.subject, LIST_SUBJECT_CHARS),
                       short_date(m.date, tz, now), m.unread, m.flagged, m.answered,
                       m.has_attachment, human_size(m.size), m.preview,
                       day_group(m.received or m.date, tz, now)))
    return out


@dataclass(frozen=True)
class AttachmentLink:
    name: str
    content_type: str
    kind: str                     # what members see: "Word document", not the MIME type
    size: str
    url: str
    opens_inline: bool


def attachment_links(folder: str, uid: int, atts: list[AttachmentInfo]) -> list[AttachmentLink]:
    links = []
    for a in atts:
        if a.inline and a.content_id and a.content_type.startswith("image/"):
            continue  # shown in the message body
        url = "/mail/part?" + urlencode({"f": folder, "uid": str(uid), "part": a.part_id})
        links.append(AttachmentLink(a.filename, a.content_type, kind_name(a.content_type),
                                    human_size(a.size), url,
                                    a.content_type in INLINE_TYPES))
    return links


@dataclass
class MessagePage:
    folder: str
    uid: int
    subject: str
    sender: str
    to: str
    cc: str
    date: str
    unread: bool
    text_html: str | None          # plain text already escaped and linked
    frame_url: str | None          # the sandboxed HTML body
    blocked_remote: int
    images_shown: bool
    show_images_url: str
    attachments: list[AttachmentLink]
    invite: CalendarInvite | None
    invite_when: str = ""
    notes: list[str] = field(default_factory=list)
    back_url: str = ""
    back_label: str = "Back to the folder"
    self_url: str = ""
    answered: str = ""
    flagged: bool = False


@dataclass(frozen=True)
class ComposeFields:
    """What the compose form shows in its fields (from the outbox's Draft, not the Draft)."""

    mode: str
    to: str
    cc: str
    bcc: str
    subject: str
    body: str
    orig_folder: str
    orig_uid: int
    in_reply_to: str
    references: tuple[str, ...]
    draft_uid: int


@dataclass(frozen=True)
class HeldFileRow:
    """An attachment the outbox holds, with its Remove box (``index`` in the held list)."""

    index: str
    name: str
    size: str


@dataclass(frozen=True)
class KeptPart:
    """An attachment of the original that travels with a forward or a reopened draft."""

    part: str
    name: str
    size: str


@dataclass(frozen=True)
class ListPane:
    """The folder's list beside an open message (the two-pane layout of a landscape iPad):
    the page of the folder that holds the message."""

    label: str
    rows_html: Markup             # the rows (render.pane_html), the open one marked
    page: int
    pages: int


@dataclass(frozen=True)
class PageCount:
    """Where a folder page is: messages in all, this page's number, how many pages."""

    total: int
    page: int
    pages: int
