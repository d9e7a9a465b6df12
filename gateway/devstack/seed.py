"""Sample council mail for the dev stack: realistic, deterministic mailboxes for the sample
users, written straight into the dev Dovecot's store with ``MailServer.deliver``.

Every seeded mailbox (all sample users but the canary, whose folders stay empty) holds, first,
a fixed set of "highlights" that exercise what a mail client must get right, then ordinary
filler mail spread over Exchange's folders and about six months:

* committee papers with real PDF attachments (one with a non-ASCII file name, RFC 2231
  encoded and split into continuations), an officer's note with .docx and .xlsx attachments;
* an HTML newsletter with remote images and a tracking pixel; spam with script and
  event-handler attributes in Junk Email (the sanitiser's job);
* threads (Message-ID / In-Reply-To / References, "Re:"/"RE:" subjects) running between the
  INBOX and Sent Items, and a reply-all thread with Cc;
* a meeting invitation (multipart/alternative with text/calendar; METHOD:REQUEST, VTIMEZONE,
  ORGANIZER, ATTENDEE, DTSTART;TZID=Europe/London, UID);
* an HTML message with an inline ``cid:`` image (multipart/related);
* RFC 2047 encoded subjects and names (UTF-8 and ISO-8859-1), quoted-printable and base64
  bodies, ISO-8859-1 and windows-1252 bodies, one body in a charset nobody knows;
* messages from today, \\Seen and unseen, \\Flagged and \\Answered; Drafts with \\Draft;
* nested folders ("Committees/Planning", "Committees/Licensing"), a non-ASCII folder
  ("Ward – Llanfair Café"), and Exchange's non-mail folders Calendar, Contacts and Tasks
  (empty, as Exchange lists them).

The same ``rng_seed`` and ``now`` give the same messages, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.devstack.mailserver import NON_MAIL_FOLDERS, MailServer
from gateway.devstack.samples import make_docx, make_pdf, make_png, make_xlsx
from gateway.devstack.users import DOMAIN, SampleUser

try:
    LONDON: tzinfo = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # no tz database: dates still work, in UTC
    LONDON = UTC

WARD_FOLDER = "Ward – Llanfair Café"
PLANNING_FOLDER = "Committees/Planning"
LICENSING_FOLDER = "Committees/Licensing"
# Every seeded mailbox has these folders (the canary's are all empty).
SEED_FOLDERS: tuple[str, ...] = (
    "INBOX", "Drafts", "Sent Items", "Deleted Items", "Junk Email", "Archive",
    "Committees", PLANNING_FOLDER, LICENSING_FOLDER, WARD_FOLDER, *NON_MAIL_FOLDERS)
# How the filler is shared out (the highlights come first, wherever they belong).
_FOLDER_WEIGHTS: dict[str, int] = {
    "INBOX": 52, "Sent Items": 12, "Archive": 9, PLANNING_FOLDER: 5, LICENSING_FOLDER: 4,
    WARD_FOLDER: 4, "Deleted Items": 6, "Junk Email": 4, "Drafts": 2, "Committees": 2,
}
CANARY_KEY = "canary"
_DAYS = 182
_EXCHANGE_UID_PREFIX = "040000008200E00074C5B7101A82E008"


# ----------------------------------------------------------------------------- the summary

@dataclass(frozen=True)
class SeedSummary:
    """What was seeded: per mailbox (lower-case address), message counts per folder (every
    seeded folder, zeros included) and the highlight messages' subjects by key ("pdf",
    "office", "newsletter", "invitation", "thread-latest", ...); how long it took."""

    counts: Mapping[str, Mapping[str, int]]
    highlights: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    seconds: float = 0.0

    def highlight(self, email: str, key: str) -> str:
        """The subject of highlight ``key`` in ``email``'s mailbox."""
        return self.highlights[email.lower()][key]

    def total(self, email: str | None = None) -> int:
        """Messages in one mailbox, or in all of them."""
        if email is not None:
            return sum(self.counts[email.lower()].values())
        return sum(sum(c.values()) for c in self.counts.values())

    def count(self, email: str, folder: str) -> int:
        return self.counts[email.lower()].get(folder, 0)

    def folders(self, email: str) -> list[str]:
        return list(self.counts[email.lower()])

    def banner_lines(self) -> list[str]:
        """One line per mailbox, for the demo banner."""
        lines = []
        for email, per_folder in self.counts.items():
            used = sum(1 for n in per_folder.values() if n)
            lines.append(f"{email}: {sum(per_folder.values())} messages in {used} folders")
        return lines


# ------------------------------------------------------------------------- building messages

@dataclass(frozen=True)
class Attachment:
    """A file attached to a message (``content_type`` like "application/pdf")."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class InlineImage:
    """An image shown inside the HTML body through ``<img src="cid:{cid}">``."""

    cid: str
    content_type: str
    data: bytes
    filename: str | None = None


def _fold_ics(line: str) -> str:
    """RFC 5545 folding: lines of at most 75 octets, continued with a leading space."""
    raw = line.encode("utf-8")
    if len(raw) <= 75:
        return line
    parts: list[str] = []
    current = ""
    limit = 75
    for ch in line:
        if len((current + ch).encode("utf-8")) > limit:
            parts.append(current)
            current = ""
            limit = 74  # continuation lines start with a space
        current += ch
    parts.append(current)
    return "\r\n ".join(parts)


def make_message(*, sender: str, to: Sequence[str], subject: str, date: datetime,
                 text: str | None = None, html: str | None = None, cc: Sequence[str] = (),
                 attachments: Sequence[Attachment] = (),
                 inline_images: Sequence[InlineImage] = (),
                 calendar: str | None = None, calendar_method: str = "REQUEST",
                 message_id: str | None = None, in_reply_to: str | None = None,
                 references: Sequence[str] = (), text_cte: str | None = None,
                 headers: Sequence[tuple[str, str]] = (), boundary_seed: str = "") -> bytes:
    """Build a MIME message the way a mail client would.

    Addresses are "Name <addr>" strings (non-ASCII names and subjects are RFC 2047 encoded,
    non-ASCII attachment names RFC 2231 encoded). ``text``/``html``/``calendar`` become a
    multipart/alternative when more than one is given; ``inline_images`` make the HTML part
    multipart/related; ``attachments`` make the whole multipart/mixed. ``text_cte`` forces
    "quoted-printable" or "base64" for the plain text. MIME boundaries derive from
    ``boundary_seed`` (default: the Message-ID), so the bytes are reproducible."""
    msg = EmailMessage(policy=default_policy)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date.astimezone(LONDON))
    if message_id is None:
        digest = hashlib.sha256(f"{sender}|{subject}|{date.isoformat()}".encode()).hexdigest()
        message_id = f"<{digest[:24]}@{DOMAIN}>"
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for name, value in headers:
        msg[name] = value
    msg["MIME-Version"] = "1.0"

    if text is not None:
        msg.set_content(text, cte=text_cte)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    if calendar is not None:
        if text is None and html is None:
            msg.set_content(calendar, subtype="calendar", params={"method": calendar_method})
        else:
            msg.add_alternative(calendar, subtype="calendar",
                                params={"method": calendar_method})
    if text is None and html is None and calendar is None:
        msg.set_content("")
    if inline_images:
        html_part = msg.get_body(preferencelist=("html",))
        if html_part is None:
            raise ValueError("inline images need an HTML body")
        for img in inline_images:
            maintype, _, subtype = img.content_type.partition("/")
            html_part.add_related(img.data, maintype, subtype, cid=f"<{img.cid}>",
                                  disposition="inline", filename=img.filename)
    for att in attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(att.data, maintype, subtype, filename=att.filename)

    seed = boundary_seed or str(msg["Message-ID"])
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            token = base64.b32encode(f"{seed}/{n}".encode()).decode().rstrip("=")[-24:]
            part.set_boundary(f"_{n:03d}_{token}_")
    return msg.as_bytes()


def make_legacy_message(*, sender: str, to: str, subject_header: str, date: datetime,
                        message_id: str, body: bytes, charset: str,
                        cte: str = "8bit") -> bytes:
    """A single-part text/plain message with a body already encoded in ``charset`` (which
    need not be one Python knows) and a Subject given ready-encoded (e.g. RFC 2047)."""
    head = (f"From: {sender}\nTo: {to}\nSubject: {subject_header}\n"
            f"Date: {format_datetime(date.astimezone(LONDON))}\nMessage-ID: {message_id}\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=\"{charset}\"\n"
            f"Content-Transfer-Encoding: {cte}\n\n")
    return head.encode("ascii") + body


def _qp_bytes(data: bytes) -> bytes:
    """Quoted-printable for a body already in its charset (lines kept, soft breaks at 76)."""
    out_lines = []
    for line in data.split(b"\n"):
        enc = "".join(chr(b) if (33 <= b <= 126 and b != 61) or b == 32 else f"={b:02X}"
                      for b in line)
        if enc.endswith(" "):
            enc = enc[:-1] + "=20"
        while len(enc) > 76:
            cut = 75
            while enc[cut - 1] == "=" or enc[cut - 2] == "=":
                cut -= 1
            out_lines.append(enc[:cut] + "=")
            enc = enc[cut:]
        out_lines.append(enc)
    return "\n".join(out_lines).encode("ascii")


def invitation_ics(*, uid: str, organizer: tuple[str, str], attendees: Sequence[tuple[str, str]],
                   summary: str, location: str, start: datetime, end: datetime,
                   stamp: datetime, description: str = "", method: str = "REQUEST",
                   sequence: int = 0) -> str:
    """An Outlook-shaped iCalendar invitation: ``start``/``end`` in Europe/London with a
    VTIMEZONE, one VEVENT with ORGANIZER and ATTENDEEs (name, address)."""
    def esc(s: str) -> str:
        return (s.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
                .replace("\n", "\\n"))

    local = "%Y%m%dT%H%M%S"
    lines = [
        "BEGIN:VCALENDAR", f"METHOD:{method}", "PRODID:Microsoft Exchange Server 2010",
        "VERSION:2.0",
        "BEGIN:VTIMEZONE", "TZID:Europe/London",
        "BEGIN:STANDARD", "DTSTART:16010101T020000", "TZOFFSETFROM:+0100",
        "TZOFFSETTO:+0000", "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10",
        "END:STANDARD",
        "BEGIN:DAYLIGHT", "DTSTART:16010101T010000", "TZOFFSETFROM:+0000",
        "TZOFFSETTO:+0100", "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3",
        "END:DAYLIGHT",
        "END:VTIMEZONE",
        "BEGIN:VEVENT",
        f"ORGANIZER;CN={organizer[0]}:mailto:{organizer[1]}",
        *[f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={name}:"
          f"mailto:{addr}" for name, addr in attendees],
        f"DESCRIPTION;LANGUAGE=en-GB:{esc(description)}",
        f"UID:{uid}",
        f"SUMMARY;LANGUAGE=en-GB:{esc(summary)}",
        f"DTSTART;TZID=Europe/London:{start.astimezone(LONDON).strftime(local)}",
        f"DTEND;TZID=Europe/London:{end.astimezone(LONDON).strftime(local)}",
        "CLASS:PUBLIC", "PRIORITY:5",
        f"DTSTAMP:{stamp.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}",
        "TRANSP:OPAQUE", "STATUS:CONFIRMED", f"SEQUENCE:{sequence}",
        f"LOCATION;LANGUAGE=en-GB:{esc(location)}",
        "BEGIN:VALARM", "DESCRIPTION:REMINDER", "TRIGGER;RELATED=START:-PT15M",
        "ACTION:DISPLAY", "END:VALARM",
        "END:VEVENT", "END:VCALENDAR",
    ]
    return "\r\n".join(_fold_ics(line) for line in lines) + "\r\n"


# ------------------------------------------------------------------------------ the content

RESIDENTS: tuple[tuple[str, str], ...] = (
    ("Siân Roberts", "sian.roberts@mail.example"),
    ("Gareth Price", "g.price@mail.example"),
    ("Mrs Eluned Hughes", "eluned.hughes@post.example"),
    ("Tom Walsh", "tom.walsh@mail.example"),
    ("Zoë Clarke", "zoe.clarke@post.example"),
    ("Dafydd ap Iorwerth", "dafydd@mail.example"),
    ("Aled Jenkins", "aled.jenkins@post.example"),
    ("Bethan Lloyd", "bethan.lloyd@mail.example"),
)
OFFICERS: tuple[tuple[str, str], ...] = (
    ("Democratic Services", f"democratic.services@{DOMAIN}"),
    ("Planning Team", f"planning@{DOMAIN}"),
    ("Licensing Team", f"licensing@{DOMAIN}"),
    ("Rhian Morgan (Head of Finance)", f"rhian.morgan@{DOMAIN}"),
    ("ICT Service Desk", f"ict.servicedesk@{DOMAIN}"),
    ("Highways Team", f"highways@{DOMAIN}"),
    ("Chief Executive's Office", f"chief.executive@{DOMAIN}"),
)
COUNCILLORS: tuple[tuple[str, str], ...] = (
    ("Cllr Megan Davies", f"megan.davies@{DOMAIN}"),
    ("Cllr Rhys Owen", f"rhys.owen@{DOMAIN}"),
    ("Cllr Helen Carter", f"helen.carter@{DOMAIN}"),
)
NEWSLETTERS: tuple[tuple[str, str, str], ...] = (
    ("Local Government Bulletin", "bulletin@newsletter.example", "LG Bulletin"),
    ("Town & Parish News", "news@newsletter.example", "Town & Parish News"),
    ("Wales Councils Network", "updates@newsletter.example", "Network update"),
)
STREETS = ("Heol y Llan", "Maes y Coed", "Station Road", "Stryd Fawr", "Church Lane",
           "Ffordd y Parc", "Lôn Isaf", "Bryn Awelon")
COMMITTEES = ("Planning Committee", "Licensing Sub-Committee", "Full Council",
              "Scrutiny Committee", "Audit and Governance Committee", "Cabinet")
CASEWORK = (
    ("Pothole on {street}", "There is a deep pothole outside number {n}, {street}. "
     "Two cars have already damaged tyres this week."),
    ("Missed bin collection – {street}", "Our recycling has not been collected for the "
     "second week running on {street}."),
    ("Street light out on {street}", "The street light opposite number {n} on {street} has "
     "been out for a fortnight; it is very dark walking home."),
    ("Parking outside Ysgol Llanfair", "Parents are parking on the zig-zags at drop-off "
     "time again. Could enforcement visit?"),
    ("Fly-tipping behind {street} garages", "Someone has dumped a sofa and building rubble "
     "behind the garages on {street}."),
    ("Planning application 26/0{n}/FUL – objection", "I wish to object to the application "
     "for a two-storey extension on {street}: it will overlook our garden."),
    ("Bus shelter damaged, {street}", "The glass in the bus shelter on {street} is smashed "
     "and there is broken glass on the pavement."),
    ("Overgrown hedge on {street}", "The hedge at the corner of {street} blocks the view "
     "of oncoming traffic."),
)
OFFICER_UPDATES = (
    ("Briefing: budget consultation 2026/27", "Members are invited to a briefing on the "
     "draft budget before the consultation opens."),
    ("Ward surgery arrangements", "Rooms at the library are booked for ward surgeries on "
     "the first Saturday of each month."),
    ("Reminder: declarations of interest", "Please review your register of interests "
     "before the next meeting of Full Council."),
    ("Members' ICT: iPad update tonight", "Your council iPad will install an update "
     "tonight. Leave it charging and connected to Wi-Fi."),
    ("Highways programme for your ward", "The resurfacing programme for the coming "
     "quarter is attached for information."),
    ("Training: code of conduct refresher", "A refresher session on the members' code of "
     "conduct will run online next month."),
)
SENTENCES = (
    "Thank you for raising this with me.",
    "I have passed your message to the officers concerned and asked for an update.",
    "Could you let me know if anything changes over the weekend?",
    "The report will go to committee next month.",
    "I will raise it at the next ward meeting.",
    "Please find the details below.",
    "Officers have been out to inspect and a repair has been scheduled.",
    "Many residents have been in touch about the same issue.",
    "Let me know if you would like to meet at the surgery on Saturday.",
    "The consultation closes at the end of the month.",
    "Diolch yn fawr am eich neges.",
    "I have copied in the relevant team so that they can respond directly.",
)
SPAM = (
    ("Prize Department <winner@lottery-prize.example>",
     "Congratulations! You have WON £1,000,000"),
    ("Microsoft 365 Admin <no-reply@micros0ft-support.example>",
     "Your mailbox is full – verify your account now"),
    ("Accounts <accounts@invoices-online.example>", "Overdue invoice #88231 – final notice"),
    ("Parcel Service <tracking@parcel-delivery.example>",
     "Your parcel could not be delivered"),
)


def _name_addr(pair: tuple[str, str]) -> str:
    return f"{pair[0]} <{pair[1]}>"


@dataclass
class PlannedMessage:
    """One message ``seed`` will deliver (``key`` names a highlight, "" for filler)."""

    folder: str
    date: datetime
    flags: tuple[str, ...]
    data: bytes
    key: str = ""


class _MailboxBuilder:
    """Plans one mailbox's messages from a private random stream."""

    def __init__(self, owner: SampleUser, now: datetime, rng: random.Random) -> None:
        self.owner = owner
        self.me = f"{owner.name} <{owner.email}>"
        self.now = now
        self.rng = rng
        self.planned: list[PlannedMessage] = []
        self.highlights: dict[str, str] = {}
        self._ids = 0

    # -- utilities ---------------------------------------------------------------------------

    def msgid(self) -> str:
        self._ids += 1
        return f"<{self.rng.getrandbits(64):016X}.{self._ids}@{DOMAIN}>"

    def ext_msgid(self, domain: str) -> str:
        self._ids += 1
        return f"<{self.rng.getrandbits(80):020x}.{self._ids}@{domain}>"

    def days_ago(self, low: float, high: float) -> datetime:
        return self.now - timedelta(days=self.rng.uniform(low, high))

    def today(self, max_hours: float = 8.0) -> datetime:
        midnight = self.now.astimezone(LONDON).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
        span = min(max_hours * 3600, (self.now - midnight).total_seconds())
        return self.now - timedelta(seconds=self.rng.uniform(60, max(61.0, span)))

    def meeting_day(self, days_ahead: int) -> datetime:
        """``days_ahead`` from now in London, moved on to a Monday-Thursday (committees do not
        meet at weekends)."""
        day = (self.now + timedelta(days=days_ahead)).astimezone(LONDON)
        while day.weekday() > 3:
            day += timedelta(days=1)
        return day

    def body(self, opener: str, n: int = 3, sign: str | None = None) -> str:
        sentences = self.rng.sample(SENTENCES, k=min(n, len(SENTENCES)))
        sign = sign or self.owner.name
        return f"{opener}\n\n{' '.join(sentences)}\n\nRegards,\n{sign}\n"

    def add(self, folder: str, date: datetime, flags: Sequence[str], data: bytes,
            key: str = "", subject: str = "") -> None:
        self.planned.append(PlannedMessage(folder, date, tuple(flags), data, key))
        if key:
            self.highlights[key] = subject

    def inbox_flags(self, date: datetime, answered: bool = False) -> list[str]:
        age = (self.now - date).total_seconds() / 86400
        flags = []
        if self.rng.random() < (0.93 if age > 2 else 0.35):
            flags.append("\\Seen")
        if self.rng.random() < 0.07:
            flags.append("\\Flagged")
        if answered:
            flags.append("\\Answered")
        return flags

    # -- highlights --------------------------------------------------------------------------

    def highlights_plan(self) -> list[Callable[[], None]]:
        return [self.h_committee_papers, self.h_office_attachments, self.h_newsletter,
                self.h_invitation, self.h_resident_thread, self.h_inline_image,
                self.h_encoded_headers, self.h_latin1, self.h_cp1252, self.h_unknown_charset,
                self.h_base64_welsh, self.h_reply_all_thread, self.h_draft, self.h_junk,
                self.h_deleted, self.h_archive, self.h_planning, self.h_licensing, self.h_ward,
                self.h_welsh_sender]

    def h_committee_papers(self) -> None:
        date = self.today(3)
        meeting = self.meeting_day(9)
        subject = f"Planning Committee – agenda and papers, {meeting:%-d %B %Y}"
        agenda = make_pdf("Planning Committee agenda", [[
            f"Meeting: {meeting:%A %-d %B %Y}, 6.00 pm, Council Chamber",
            "1. Apologies for absence", "2. Declarations of interest",
            "3. Minutes of the previous meeting", "4. Application 26/0412/FUL, Heol y Llan",
            "5. Application 26/0388/OUT, land off Station Road", "6. Appeals update"]])
        report = make_pdf("Report of the Head of Planning", [[
            "Application 26/0412/FUL: two-storey side extension.",
            "Recommendation: approve subject to conditions."], ["Appendix A: site plan"]])
        data = make_message(
            sender=_name_addr(OFFICERS[0]), to=[self.me], subject=subject, date=date,
            text=("Dear Councillor,\n\nPlease find attached the agenda and papers for the "
                  f"Planning Committee on {meeting:%A %-d %B}.\n\nDemocratic Services\n"),
            attachments=[Attachment("Planning Committee agenda.pdf", "application/pdf", agenda),
                         Attachment("Adroddiad – Cynllunio (Café site).pdf", "application/pdf",
                                    report)],
            message_id=self.msgid())
        self.add("INBOX", date, [], data, "pdf", subject)

    def h_office_attachments(self) -> None:
        date = self.days_ago(1, 4)
        subject = "Budget consultation – draft response and figures"
        docx = make_docx("Budget consultation 2026/27 – draft response", [
            "The council welcomes the opportunity to respond.",
            "Members are asked to comment by Friday."])
        xlsx = make_xlsx("Ward budget", [["Ward", "Allocation (£)", "Spent (£)"],
                                         ["Llanfair", 12000, 8450.5], ["Maes y Coed", 9000, 2210],
                                         ["Total", 21000, 10660.5]])
        data = make_message(
            sender=_name_addr(OFFICERS[3]), to=[self.me], subject=subject, date=date,
            text=self.body("Dear Councillor,", 2, "Rhian Morgan"),
            attachments=[Attachment(
                "Budget consultation – draft response.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document", docx),
                Attachment("Ward budget 2026-27.xlsx",
                           "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                           xlsx)],
            message_id=self.msgid())
        self.add("INBOX", date, [*self.inbox_flags(date), "\\Flagged"], data, "office", subject)

    def newsletter(self, date: datetime, which: int) -> tuple[str, bytes]:
        name, addr, title = NEWSLETTERS[which % len(NEWSLETTERS)]
        token = f"{self.rng.getrandbits(48):012x}"
        subject = f"{title}: {date.astimezone(LONDON):%-d %B} – funding, planning reform, events"
        html = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:Arial,sans-serif;color:#222}} .btn{{background:#005e54;color:#fff;
padding:8px 14px;text-decoration:none}}</style></head>
<body style="margin:0;background:#f2f2f2">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">
<table width="600" style="background:#ffffff">
<tr><td><img src="https://newsletter.example/img/header.png?u={token}" width="600" height="120"
 alt="{title}"></td></tr>
<tr><td style="padding:16px"><h1 style="font-size:22px">{title}</h1>
<p>New funding for community halls opens next week. Councils can bid for up to £50,000.</p>
<p><img src="https://cdn.newsletter.example/photos/hall.jpg" width="560" alt="A village hall">
</p>
<p><a class="btn" href="https://newsletter.example/r?u={token}&amp;l=1&amp;utm_source=email">
Read more</a></p>
<p style="font-size:11px;color:#777">You are receiving this because you subscribed.
<a href="https://newsletter.example/unsubscribe?u={token}">Unsubscribe</a></p>
</td></tr></table></td></tr></table>
<img src="https://newsletter.example/track.gif?u={token}" width="1" height="1" alt=""
 style="display:none">
</body></html>
"""
        text = (f"{title}\n\nNew funding for community halls opens next week.\n"
                f"Read more: https://newsletter.example/r?u={token}&l=1\n")
        data = make_message(sender=f"{name} <{addr}>", to=[self.owner.email], subject=subject,
                            date=date, text=text, html=html,
                            message_id=self.ext_msgid("newsletter.example"),
                            headers=[("List-Unsubscribe",
                                      f"<https://newsletter.example/unsubscribe?u={token}>")])
        return subject, data

    def h_newsletter(self) -> None:
        date = self.today(2)
        subject, data = self.newsletter(date, 0)
        self.add("INBOX", date, [], data, "newsletter", subject)

    def invitation(self, date: datetime, committee: str, days_ahead: int,
                   key: str = "") -> None:
        start_local = self.meeting_day(days_ahead).replace(hour=18, minute=0, second=0,
                                                           microsecond=0)
        end_local = start_local + timedelta(hours=2)
        organizer = OFFICERS[0]
        uid = _EXCHANGE_UID_PREFIX + f"{self.rng.getrandbits(128):032X}"
        location = "Council Chamber, Llanfair"
        ics = invitation_ics(
            uid=uid, organizer=organizer, attendees=[(self.owner.name, self.owner.email),
                                                     COUNCILLORS[0]],
            summary=committee, location=location, start=start_local, end=end_local,
            stamp=date, description=f"{committee}. Papers will follow.")
        # Outlook names the zone by its standard offset, summer or winter.
        when = (f"{start_local:%A, %-d %B %Y} {start_local:%H:%M}-{end_local:%H:%M} "
                "(UTC+00:00) Dublin, Edinburgh, Lisbon, London")
        text = f"When: {when}\nWhere: {location}\n\n*~*~*~*~*~*~*~*~*~*\n\n{committee}.\n"
        html = (f"<html><body><p><b>When:</b> {when}<br><b>Where:</b> {location}</p>"
                f"<p>{committee}. Papers will follow.</p></body></html>")
        subject = f"{committee}"
        data = make_message(sender=_name_addr(organizer),
                            to=[self.me, _name_addr(COUNCILLORS[0])], subject=subject,
                            date=date, text=text, html=html, calendar=ics,
                            message_id=self.msgid(),
                            headers=[("Thread-Topic", committee)])
        flags = [] if key else self.inbox_flags(date)
        self.add("INBOX", date, flags, data, key, subject)

    def h_invitation(self) -> None:
        self.invitation(self.today(1), "Planning Committee", 9, key="invitation")

    def h_resident_thread(self) -> None:
        resident = RESIDENTS[0]
        street = STREETS[0]
        subject = f"Pothole on {street}"
        first_date = self.days_ago(3, 5)
        id1 = self.ext_msgid("mail.example")
        m1 = make_message(sender=_name_addr(resident), to=[self.me], subject=subject,
                          date=first_date,
                          text=(f"Dear Councillor,\n\nThere is a deep pothole outside number "
                                f"14, {street}. Two cars have damaged tyres.\n\nSiân\n"),
                          message_id=id1)
        self.add("INBOX", first_date, ["\\Seen", "\\Answered"], m1, "thread-start", subject)
        reply_date = first_date + timedelta(hours=3)
        id2 = self.msgid()
        m2 = make_message(sender=self.me, to=[_name_addr(resident)], cc=[_name_addr(OFFICERS[5])],
                          subject=f"Re: {subject}", date=reply_date,
                          text=self.body("Dear Siân,", 2) + "\n> There is a deep pothole\n",
                          message_id=id2, in_reply_to=id1, references=[id1])
        self.add("Sent Items", reply_date, ["\\Seen"], m2, "thread-reply", f"Re: {subject}")
        last_date = self.today(4)
        m3 = make_message(sender=_name_addr(resident), to=[self.me], subject=f"Re: {subject}",
                          date=last_date,
                          text=("Thank you – the highways team came out this morning.\n\n"
                                "Siân\n\n> Dear Siân,\n> Thank you for raising this with me.\n"),
                          message_id=self.ext_msgid("mail.example"), in_reply_to=id2,
                          references=[id1, id2])
        self.add("INBOX", last_date, [], m3, "thread-latest", f"Re: {subject}")

    def h_inline_image(self) -> None:
        date = self.days_ago(0.5, 2)
        subject = "Mayor's charity evening – poster attached inline"
        html = ('<html><body><p>Dear colleagues,</p>'
                '<p><img src="cid:crest@council.example" alt="Council crest" width="48" '
                'height="48"></p><p>The Mayor\'s charity evening is on Friday at 7pm in the '
                'Memorial Hall. All welcome.</p></body></html>')
        data = make_message(
            sender=_name_addr(OFFICERS[6]), to=[self.me], subject=subject, date=date,
            text="The Mayor's charity evening is on Friday at 7pm in the Memorial Hall.\n",
            html=html,
            inline_images=[InlineImage("crest@council.example", "image/png", make_png(),
                                       "crest.png")],
            message_id=self.msgid())
        self.add("INBOX", date, self.inbox_flags(date), data, "inline-image", subject)

    def h_encoded_headers(self) -> None:
        date = self.days_ago(1, 3)
        subject = "Café opening hours – Llanfair square ☕"
        data = make_message(
            sender=_name_addr(RESIDENTS[4]), to=[self.me], subject=subject, date=date,
            text=("Bore da,\n\nThe café on the square (Caffi’r Sgwâr) would like to open "
                  "until 10pm in summer. Würde das gehen? Ça va?\n\nZoë\n"),
            text_cte="quoted-printable", message_id=self.ext_msgid("post.example"))
        self.add("INBOX", date, self.inbox_flags(date), data, "rfc2047", subject)

    def h_latin1(self) -> None:
        date = self.days_ago(5, 20)
        subject = "Réunion du jumelage - Llanfair & Plouézec"
        data = make_legacy_message(
            sender="=?iso-8859-1?Q?H=E9l=E8ne_Le_Gall?= <helene.legall@jumelage.example>",
            to=self.owner.email,
            subject_header="=?iso-8859-1?Q?R=E9union_du_jumelage_-_Llanfair_=26_Plou=E9zec?=",
            date=date, message_id=self.ext_msgid("jumelage.example"),
            body=("Bonjour,\n\nLa réunion du comité de jumelage aura lieu à la mairie.\n"
                  "À bientôt,\nHélène\n").encode("iso-8859-1"),
            charset="iso-8859-1", cte="8bit")
        self.add("INBOX", date, ["\\Seen"], data, "latin1", subject)

    def h_cp1252(self) -> None:
        date = self.days_ago(6, 25)
        subject = "Hall hire – “community rate” query"
        body = ("Dear Councillor,\n\nThe hall’s “community rate” is £25 per hour – or "
                "€30 for our twinning visitors… is that right?\n\nDiolch,\nAled\n")
        data = make_legacy_message(
            sender="Aled Jenkins <aled.jenkins@post.example>", to=self.owner.email,
            subject_header="=?windows-1252?Q?Hall_hire_=96_=93community_rate=94_query?=",
            date=date, message_id=self.ext_msgid("post.example"),
            body=_qp_bytes(body.encode("cp1252")), charset="windows-1252",
            cte="quoted-printable")
        self.add("INBOX", date, ["\\Seen"], data, "cp1252", subject)

    def h_unknown_charset(self) -> None:
        date = self.days_ago(8, 30)
        subject = "Old system export (legacy charset)"
        data = make_legacy_message(
            sender="Records Office <records@legacy.example>", to=self.owner.email,
            subject_header=subject, date=date, message_id=self.ext_msgid("legacy.example"),
            body=b"Export from the old casework system.\nName: Ll\xfdr \xa4 Caf\x82\n",
            charset="x-council-legacy-1", cte="8bit")
        self.add("INBOX", date, ["\\Seen"], data, "unknown-charset", subject)

    def h_base64_welsh(self) -> None:
        date = self.days_ago(2, 6)
        subject = "Cyfarfod y Cyngor Llawn – nodyn atgoffa"
        data = make_message(
            sender=_name_addr(OFFICERS[0]), to=[self.me], subject=subject, date=date,
            text=("Annwyl Gynghorydd,\n\nDyma nodyn i’ch atgoffa am gyfarfod y Cyngor Llawn "
                  "nos Iau am 6 o’r gloch yn Siambr y Cyngor.\n\nGwasanaethau Democrataidd\n"),
            text_cte="base64", message_id=self.msgid())
        self.add("INBOX", date, self.inbox_flags(date), data, "base64", subject)

    def h_reply_all_thread(self) -> None:
        topic = "Budget consultation – members' comments"
        base = self.days_ago(7, 12)
        officer = OFFICERS[3]
        ids: list[str] = []
        people = [officer, COUNCILLORS[0], COUNCILLORS[1]]
        everyone = [self.me] + [_name_addr(c) for c in COUNCILLORS]
        for i, person in enumerate(people):
            date = base + timedelta(hours=5 * i)
            mid = self.msgid()
            subject = topic if i == 0 else "RE: " + topic
            data = make_message(
                sender=_name_addr(person), to=[self.me], cc=[a for a in everyone if a != self.me],
                subject=subject, date=date,
                text=self.body("Colleagues,", 2, person[0]) +
                ("\n-----Original Message-----\n" if ids else ""),
                message_id=mid, in_reply_to=ids[-1] if ids else None, references=list(ids),
                headers=[("Thread-Topic", topic)])
            ids.append(mid)
            self.add("INBOX", date, ["\\Seen"], data, "reply-all" if i == 2 else "",
                     subject)

    def h_draft(self) -> None:
        date = self.days_ago(0.2, 1)
        subject = "Re: Parking outside Ysgol Llanfair"
        data = make_message(sender=self.me, to=[_name_addr(RESIDENTS[1])], subject=subject,
                            date=date, text="Dear Gareth,\n\nThank you for your email. I have\n",
                            message_id=self.msgid())
        self.add("Drafts", date, ["\\Draft", "\\Seen"], data, "draft", subject)

    def spam(self, date: datetime) -> tuple[str, bytes]:
        sender, subject = self.rng.choice(SPAM)
        html = ('<html><body><h1 style="color:red">ACT NOW</h1>'
                f"<p>{subject}.</p>"
                '<p><a href="http://phish.example/login?acct=council">Verify here</a></p>'
                '<img src="http://phish.example/x.gif" onerror="alert(document.cookie)">'
                "<script>document.location='http://phish.example/'</script>"
                "</body></html>")
        data = make_message(sender=sender, to=[self.owner.email], subject=subject, date=date,
                            html=html, message_id=self.ext_msgid("spam.example"))
        return subject, data

    def h_junk(self) -> None:
        date = self.days_ago(0.5, 3)
        subject, data = self.spam(date)
        self.add("Junk Email", date, [], data, "junk", subject)

    def h_deleted(self) -> None:
        date = self.days_ago(3, 10)
        subject, data = self.newsletter(date, 1)
        self.add("Deleted Items", date, ["\\Seen"], data, "deleted", subject)

    def h_archive(self) -> None:
        date = self.days_ago(60, 170)
        subject, data = self.casework(date, 3)
        self.add("Archive", date, ["\\Seen", "\\Answered"], data, "archive", subject)

    def committee_papers(self, date: datetime, committee: str) -> tuple[str, bytes]:
        meeting = (date + timedelta(days=7)).astimezone(LONDON)
        while meeting.weekday() > 3:
            meeting += timedelta(days=1)
        subject = f"{committee} – papers for {meeting:%-d %B %Y}"
        pdf = make_pdf(f"{committee} agenda", [[
            f"{meeting:%A %-d %B %Y}", "1. Apologies", "2. Declarations of interest",
            "3. Minutes", "4. Reports of officers"]])
        data = make_message(
            sender=_name_addr(OFFICERS[0]), to=[self.me], subject=subject, date=date,
            text=f"Dear Councillor,\n\nThe papers for the {committee} are attached.\n",
            attachments=[Attachment(f"{committee} agenda {meeting:%Y-%m-%d}.pdf",
                                    "application/pdf", pdf)],
            message_id=self.msgid())
        return subject, data

    def h_planning(self) -> None:
        date = self.days_ago(14, 40)
        subject, data = self.committee_papers(date, "Planning Committee")
        self.add(PLANNING_FOLDER, date, ["\\Seen"], data, "planning-folder", subject)

    def h_licensing(self) -> None:
        date = self.days_ago(14, 40)
        subject, data = self.committee_papers(date, "Licensing Sub-Committee")
        self.add(LICENSING_FOLDER, date, ["\\Seen"], data, "licensing-folder", subject)

    def h_ward(self) -> None:
        date = self.days_ago(5, 30)
        subject, data = self.casework(date, 1)
        self.add(WARD_FOLDER, date, ["\\Seen"], data, "ward-folder", subject)

    def h_welsh_sender(self) -> None:
        """A resident whose name has no ASCII spelling ("Siân Llŷr Pennant"): search for
        "Siân" must find her even on Exchange, which searches in US-ASCII only."""
        sender = "Siân Llŷr Pennant <sian.pennant@mail.example>"
        for i, (subject, text) in enumerate((
                ("Llwybr troed Heol y Llan", "Mae'r llwybr troed wedi cau ers wythnos."),
                ("Pont Llŷr: ffordd ar gau dros dro", "Diolch am eich help gyda'r bont."),
                ("Cyfarfod y gymuned – nos Iau", "Welwn ni chi yn Neuadd y Pentref?"))):
            date = self.days_ago(1 + 3 * i, 3 + 3 * i)
            data = make_message(sender=sender, to=[self.me], subject=subject, date=date,
                                text=f"Annwyl Gynghorydd,\n\n{text}\n\nSiân\n",
                                message_id=self.ext_msgid("mail.example"))
            self.add("INBOX", date, self.inbox_flags(date), data,
                     "welsh-sender" if i == 0 else "", subject)

    # -- filler ------------------------------------------------------------------------------

    def casework(self, date: datetime, which: int | None = None) -> tuple[str, bytes]:
        idx = self.rng.randrange(len(CASEWORK)) if which is None else which % len(CASEWORK)
        subj_t, body_t = CASEWORK[idx]
        street = self.rng.choice(STREETS)
        n = self.rng.randint(2, 98)
        subject = subj_t.format(street=street, n=n)
        resident = self.rng.choice(RESIDENTS)
        data = make_message(sender=_name_addr(resident), to=[self.me], subject=subject,
                            date=date,
                            text=f"Dear Councillor,\n\n{body_t.format(street=street, n=n)}\n\n"
                                 f"{resident[0]}\n",
                            message_id=self.ext_msgid(resident[1].split("@")[1]))
        return subject, data

    def officer_update(self, date: datetime) -> tuple[str, bytes]:
        subject, text = self.rng.choice(OFFICER_UPDATES)
        officer = self.rng.choice(OFFICERS)
        data = make_message(sender=_name_addr(officer), to=[self.me], subject=subject,
                            date=date, text=self.body(f"Dear Councillor,\n\n{text}", 2,
                                                      officer[0]),
                            message_id=self.msgid())
        return subject, data

    def sent_reply(self, date: datetime) -> tuple[str, bytes]:
        subj_t, _ = self.rng.choice(CASEWORK)
        street = self.rng.choice(STREETS)
        subject = "Re: " + subj_t.format(street=street, n=self.rng.randint(2, 98))
        resident = self.rng.choice(RESIDENTS)
        orig = self.ext_msgid(resident[1].split("@")[1])
        cc = [_name_addr(self.rng.choice(OFFICERS))] if self.rng.random() < 0.4 else []
        first_name = resident[0].removeprefix("Mrs ").split()[0]
        data = make_message(sender=self.me, to=[_name_addr(resident)], cc=cc, subject=subject,
                            date=date, text=self.body(f"Dear {first_name},", 3),
                            message_id=self.msgid(), in_reply_to=orig, references=[orig])
        return subject, data

    def filler(self, folder: str) -> None:
        rng = self.rng
        if folder == "INBOX":
            date = self.today() if rng.random() < 0.05 else self.days_ago(0, _DAYS)
            kind = rng.random()
            if kind < 0.40:
                _, data = self.casework(date)
            elif kind < 0.62:
                _, data = self.officer_update(date)
            elif kind < 0.75:
                _, data = self.newsletter(date, rng.randrange(len(NEWSLETTERS)))
            elif kind < 0.85:
                self.invitation(date, rng.choice(COMMITTEES), rng.randint(3, 40))
                return
            else:
                _, data = self.committee_papers(date, rng.choice(COMMITTEES))
            self.add(folder, date, self.inbox_flags(date), data)
        elif folder == "Sent Items":
            date = self.days_ago(0, _DAYS)
            self.add(folder, date, ["\\Seen"], self.sent_reply(date)[1])
        elif folder == "Drafts":
            date = self.days_ago(0, 30)
            self.add(folder, date, ["\\Draft", "\\Seen"], self.sent_reply(date)[1])
        elif folder == "Junk Email":
            date = self.days_ago(0, 30)
            self.add(folder, date, [], self.spam(date)[1])
        elif folder == "Deleted Items":
            date = self.days_ago(0, 60)
            maker = self.newsletter if rng.random() < 0.6 else None
            data = (maker(date, rng.randrange(3))[1] if maker else self.officer_update(date)[1])
            self.add(folder, date, ["\\Seen"], data)
        elif folder in (PLANNING_FOLDER, LICENSING_FOLDER, "Committees"):
            date = self.days_ago(7, _DAYS)
            committee = {PLANNING_FOLDER: "Planning Committee",
                         LICENSING_FOLDER: "Licensing Sub-Committee"}.get(
                folder, rng.choice(COMMITTEES))
            self.add(folder, date, ["\\Seen"], self.committee_papers(date, committee)[1])
        else:  # Archive, the ward folder
            date = self.days_ago(20 if folder == "Archive" else 1, _DAYS)
            self.add(folder, date, ["\\Seen"], self.casework(date)[1])


def _allocate(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` by ``weights`` (largest remainder, ties in declaration order)."""
    if total <= 0:
        return dict.fromkeys(weights, 0)
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    rest = total - sum(out.values())
    for k in sorted(exact, key=lambda k: -(exact[k] - out[k]))[:rest]:
        out[k] += 1
    return out


def plan_mailbox(owner: SampleUser, *, now: datetime, messages: int,
                 rng_seed: int) -> tuple[list[PlannedMessage], dict[str, str]]:
    """The messages for one mailbox (unsorted) and the highlights' subjects."""
    builder = _MailboxBuilder(owner, now, random.Random(f"{rng_seed}/{owner.email.lower()}"))
    for make in builder.highlights_plan():
        if len(builder.planned) >= messages:
            break
        make()
    del builder.planned[messages:]
    remaining = messages - len(builder.planned)
    for folder, n in _allocate(remaining, _FOLDER_WEIGHTS).items():
        for _ in range(n):
            builder.filler(folder)
    return builder.planned, builder.highlights


def seed(mail: MailServer, *, now: datetime | None = None, messages_per_user: int = 300,
         rng_seed: int = 7) -> SeedSummary:
    """Fill every sample mailbox on ``mail`` (the canary's folders stay empty) with
    ``messages_per_user`` messages; deterministic for a given ``rng_seed`` and ``now``."""
    started = time.perf_counter()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    counts: dict[str, dict[str, int]] = {}
    highlights: dict[str, dict[str, str]] = {}
    for owner in mail.users:
        email = owner.email.lower()
        per_folder = dict.fromkeys(SEED_FOLDERS, 0)
        for folder in SEED_FOLDERS:
            mail.ensure_folder(owner.email, folder)
        if owner.key != CANARY_KEY and owner.seed_mail:
            planned, marks = plan_mailbox(owner, now=now, messages=messages_per_user,
                                          rng_seed=rng_seed)
            highlights[email] = marks
            # Oldest first, so that UIDs follow arrival order as on a real server.
            planned.sort(key=lambda p: (p.date, p.folder))
            for item in planned:
                received = item.date
                if item.folder not in ("Sent Items", "Drafts"):
                    received += timedelta(seconds=3)
                mail.deliver(owner.email, item.data, folder=item.folder, flags=item.flags,
                             internaldate=min(received, now))
                per_folder[item.folder] += 1
        counts[email] = per_folder
    return SeedSummary(counts=counts, highlights=highlights,
                       seconds=time.perf_counter() - started)
