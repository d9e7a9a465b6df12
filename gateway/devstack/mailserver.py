"""The dev stack's real mail servers: a private Dovecot (IMAP over implicit TLS, XOAUTH2 checked
against the dev token signer's key) and an aiosmtpd submission server (STARTTLS + XOAUTH2) that
behaves like Exchange Online's ``smtp.office365.com:587`` where it matters to the gateway.

Design notes (see also /work/shared/FIELD-NOTES.md):

* Dovecot runs as its own private instance from a config generated in ``workdir``: own
  ``base_dir``, ``state_dir`` and log, loopback only, implicit TLS only (no plain listener).
  It is started with ``dovecot -F`` in a new session (process group) so ``stop`` can end it
  and every child, and nothing is left behind.
* When we are root, Dovecot is dropped to ``nobody`` with ``setpriv`` before it starts, so no
  part of it ever runs as root. Mail, state and the TLS key copy are owned by ``nobody``.
  Dovecot checks its mail directories with access(2), which ignores capabilities, so every
  directory above them must be searchable by ``nobody``; when ``workdir`` is not (pytest's
  ``/tmp/pytest-of-root`` is 0700), the files live in a private temporary directory instead,
  with ``workdir/mail`` and ``workdir/dovecot`` symlinked to it (see ``_choose_root``).
  When we are not root, Dovecot simply runs as the current user.
* Dovecot gets the parent-death signal (``setpriv --pdeathsig``): if the thread that ran
  ``start``/``start_imap`` (the event loop's thread) ends without ``stop``, Dovecot stops too,
  so a killed test run leaves no orphan server holding ports.
* Mailbox format: Maildir (Maildir++ layout). Messages can be written straight into the store
  (``tmp/`` then ``rename`` into ``cur/``), which is how ``deliver`` stays fast enough to seed
  thousands of messages in a second or two, and Dovecot picks them up on its next sync (and
  from inotify while a client IDLEs). Flags live in the file name (``:2,FS``) and INTERNALDATE
  is the file's mtime. sdbox would need ``doveadm``/LDA for every message.
  The list index is off (``mailbox_list_index = no``) so folders created on disk behind
  Dovecot's back always show up in LIST.
* Exchange's shape: one namespace, prefix "", separator "/" (``NAMESPACE (("" "/")) NIL NIL``),
  Exchange's folder names with special-use flags, all created on first login, and the non-mail
  folders Calendar, Contacts and Tasks that Exchange lists.
* Auth: ``passdb oauth2`` with local JWT validation against the signer's public key; the
  userdb is a passwd-file that knows only the sample users (a valid token for anyone else is
  refused, as Exchange would). Loopback is a "trusted network" so that tests which fail to log
  in many times are not slowed down by Dovecot's auth penalty (the same setting a webmail uses).

Nothing here logs mail content, tokens or keys; aiosmtpd's own logger (``mail.log``), which
logs every command line (AUTH included) at INFO, is capped at WARNING while SMTP runs.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import collections
import contextlib
import grp
import logging
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jwt
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from gateway.devstack.exchange_imap import IDLE_TIMEOUT, ExchangeImapProxy
from gateway.devstack.exchange_imap import MAX_CONNECTIONS as MAX_IMAP_CONNECTIONS
from gateway.devstack.procs import free_port, group_members
from gateway.devstack.tokens import (
    ACCESS_ISSUER,
    EXCHANGE_APP_AUDIENCE,
    ISSUED_BACKDATE_SECONDS,
    OUTLOOK_AUDIENCE,
    TokenSigner,
)
from gateway.devstack.users import CLIENT_ID, DOMAIN, TENANT_ID, USERS, SampleUser
from gateway.server.certs import DevCerts

log = logging.getLogger(__name__)

# What Exchange Online advertises (FIELD-NOTES, from a public protocol log).
EXCHANGE_IMAP_CAPABILITIES: tuple[str, ...] = (
    "IMAP4", "IMAP4rev1", "SASL-IR", "UIDPLUS", "MOVE", "ID", "UNSELECT", "CHILDREN", "IDLE",
    "NAMESPACE", "LITERAL+")
EXCHANGE_GREETING = "The Microsoft Exchange IMAP4 service is ready."

# Exchange's well-known folders, as Exchange names them, with their RFC 6154 attribute.
SPECIAL_FOLDERS: dict[str, str] = {
    "Drafts": "\\Drafts",
    "Sent Items": "\\Sent",
    "Deleted Items": "\\Trash",
    "Junk Email": "\\Junk",
    "Archive": "\\Archive",
}
# Exchange lists these (they hold no mail over IMAP).
NON_MAIL_FOLDERS: tuple[str, ...] = ("Calendar", "Contacts", "Tasks")
HIERARCHY_SEPARATOR = "/"

SMTP_MAX_MESSAGE_SIZE = 35 * 1024 * 1024  # Exchange Online's default
SMTP_AUTH_FAILED = "535 5.7.3 Authentication unsuccessful"
SMTP_SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
SMTP_NOT_AUTHENTICATED = "530 5.7.57 Client not authenticated to send mail"
SMTP_USER_UNKNOWN = "550 5.1.1 User unknown"
SMTP_SEND_SCOPE = "SMTP.Send"
# SMTP AUTH turned off for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled),
# the default for tenants created since 2020: Microsoft Learn, "Enable or disable SMTP AUTH
# in Exchange Online", and the text clients log (aka.ms/smtp_auth_disabled).
SMTP_AUTH_DISABLED = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                      "disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for "
                      "more information.")
# Microsoft Learn, "SMTP AUTH client submission improvements" (OfficeDocs-Support
# smtp-submission-improvements.md): at most 3 concurrent connections per mailbox, more get
# this; 30 messages a minute, the excess "throttled and carried over to the following
# minutes" (delayed, not refused: the correction in OfficeDocs-Support PR 1488 and the
# Exchange Online limits page); 10,000 recipients a day, past which submissions get
# SubmissionQuotaExceeded.
SMTP_THREAD_LIMIT = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
SMTP_MAX_CONNECTIONS = 3
SMTP_MESSAGES_PER_MINUTE = 30
SMTP_RECIPIENTS_PER_DAY = 10_000
SMTP_QUOTA_EXCEEDED = ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException;"
                       " Failed to process message due to a permanent exception with message "
                       "Cannot submit message.")

_MAILDIR_FLAGS = {"\\draft": "D", "\\flagged": "F", "\\answered": "R", "\\seen": "S",
                  "\\deleted": "T"}
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class MailServerError(RuntimeError):
    """The dev mail servers could not be started or used."""


@dataclass(frozen=True)
class SentMessage:
    """A message the SMTP server accepted for recipients outside the local domain(s)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]  # only the external envelope recipients
    data: bytes                # as received (CRLF line ends)


# ---------------------------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 5.1.3): IMAP's mailbox-name encoding, also Maildir++'s on-disk one.

def imap_utf7_encode(name: str) -> str:
    """Encode a mailbox name in IMAP modified UTF-7."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def imap_utf7_decode(name: str) -> str:
    """Decode an IMAP modified UTF-7 mailbox name."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.index("-", i + 1)
        chunk = name[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Helpers

def outlook_access_token(signer: TokenSigner, user: SampleUser, *, lifetime: int = 3600,
                         now: float | None = None, **overrides: Any) -> str:
    """An access token shaped like the ones Entra issues for ``https://outlook.office.com``
    (IMAP and SMTP), signed by ``signer``. ``overrides`` replace or add claims (a value of
    None removes the claim). For tests; the Entra stand-in issues the real ones."""
    issued = int(time.time() if now is None else now)
    dated = issued - ISSUED_BACKDATE_SECONDS  # as Entra dates them (gateway.devstack.tokens)
    claims: dict[str, Any] = {
        "aud": OUTLOOK_AUDIENCE, "iss": ACCESS_ISSUER, "iat": dated, "nbf": dated,
        "exp": issued + lifetime, "tid": TENANT_ID, "oid": user.oid, "sub": user.oid,
        "upn": user.email, "email": user.email, "name": user.name,
        "scp": "IMAP.AccessAsUser.All SMTP.Send", "azp": CLIENT_ID, "appid": CLIENT_ID,
        "ver": "1.0",
    }
    for key, value in overrides.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return signer.sign(claims)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _reachable_by(path: Path, uid: int, gid: int) -> bool:
    """May ``uid``/``gid`` search every directory from / down to ``path``?"""
    p = path.resolve()
    return all(_searchable_by(d, uid, gid) for d in [*p.parents, p])


def _searchable_by(directory: Path, uid: int, gid: int) -> bool:
    """May ``uid``/``gid`` (no supplementary groups) search ``directory``?"""
    st = directory.stat()
    if uid == st.st_uid:
        return bool(st.st_mode & 0o100)
    if gid == st.st_gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _maildir_info(flags: Sequence[str]) -> str:
    letters: set[str] = set()
    for flag in flags:
        letter = _MAILDIR_FLAGS.get(flag.lower())
        if letter is None:
            # Exchange's PERMANENTFLAGS hold only the system flags: no keywords.
            raise ValueError(f"unsupported flag {flag!r}: only {sorted(_MAILDIR_FLAGS)}")
        letters.add(letter)
    return "2," + "".join(sorted(letters))


def _utc_timestamp(when: datetime) -> float:
    if when.tzinfo is None:  # naive datetimes are taken as UTC
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


# ---------------------------------------------------------------------------------------------
# SMTP (aiosmtpd)

class _ExchangeSMTP(SMTP):
    """aiosmtpd's SMTP with room for Entra-sized XOAUTH2 lines and Exchange's wording."""

    # The stream limit must hold a whole "AUTH XOAUTH2 <base64 token>" line; DATA lines are
    # still held to RFC 5321's 1000 octets (set per instance below).
    line_length_limit = 64 * 1024
    _AUTH_LINE_LIMIT = 64 * 1024

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # The mailbox this connection authenticated as, counted in MailServer._smtp_open.
        self.counted_as: str | None = None
        self.line_length_limit = 1001
        limits: collections.defaultdict[str, int] = collections.defaultdict(
            lambda: SMTP.command_size_limit)
        limits["AUTH"] = self._AUTH_LINE_LIMIT
        self.command_size_limits = limits

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if self.counted_as:
            self.event_handler.server._smtp_closed(self.counted_as)
            self.counted_as = None

    async def check_auth_needed(self, caller_method: str) -> bool:
        assert self.session is not None
        if not self.session.authenticated:
            await self.push(SMTP_NOT_AUTHENTICATED)
            return True
        return False


class _QuietAiosmtpd(logging.Filter):
    """Drop aiosmtpd's own deprecation noise, logged on every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in str(record.msg)


class _SMTPController(Controller):
    def factory(self) -> SMTP:
        return _ExchangeSMTP(self.handler, **self.SMTP_kwargs)


class _SMTPHandler:
    """Exchange Online submission rules: XOAUTH2 only, send as yourself, 35 MB, local
    recipients delivered to their INBOX, a copy in the sender's Sent Items."""

    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def auth_XOAUTH2(self, smtp: SMTP, args: list[str]) -> AuthResult:
        if len(args) >= 2 and args[1] != "=":
            try:
                blob = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                return AuthResult(success=False, handled=False, message=SMTP_AUTH_FAILED)
        else:
            answer = await smtp.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)  # aborted, already answered
            blob = answer
        email = self.server._check_xoauth2(blob)
        if email is None:
            return AuthResult(success=False, handled=False, message=SMTP_AUTH_FAILED)
        if email.lower() in self.server.smtp_auth_off:
            return AuthResult(success=False, handled=False, message=SMTP_AUTH_DISABLED)
        if isinstance(smtp, _ExchangeSMTP) and not smtp.counted_as:
            # Counted while the connection is open (Exchange's limit is on connections).
            smtp.counted_as = email.lower()
            self.server._smtp_opened(email.lower())
        return AuthResult(success=True, auth_data=email)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        user = session.auth_data if isinstance(session.auth_data, str) else ""
        if address.lower() != user.lower():
            return SMTP_SEND_AS_DENIED
        if self.server._smtp_sessions(user) > self.server.smtp_max_connections:
            return SMTP_THREAD_LIMIT
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.server._is_local_domain(address) and not self.server._is_local_user(address):
            return SMTP_USER_UNKNOWN
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        refusal = self.server._take_refusal()
        if refusal is not None:
            return refusal
        data = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        if not self.server._within_recipient_quota(mail_from, len(envelope.rcpt_tos)):
            return SMTP_QUOTA_EXCEEDED
        peer = session.peer[0] if isinstance(session.peer, tuple) else "127.0.0.1"
        answer = self.server._accept(mail_from, list(envelope.rcpt_tos), data, peer,
                                     hold=self.server._rate_delay(mail_from))
        delay = self.server._take_reply_delay()
        if delay:
            # The message is taken (delivered, in Sent Items) before the answer is late: the
            # client cannot know it went. Seen with Exchange under load, where the final
            # 250 can take longer than a client's timeout.
            await asyncio.sleep(delay)
        return answer


# ---------------------------------------------------------------------------------------------

class MailServer:
    """A private Dovecot (IMAP, implicit TLS, XOAUTH2) plus an aiosmtpd submission server.

    ``start``/``stop`` (and the per-server variants for fault tests) are async and run in the
    caller's loop; the SMTP server itself runs on its own thread and loop (aiosmtpd's
    ``Controller``), so a busy or blocked caller cannot stall it. ``deliver`` writes straight
    into the Maildir store and is synchronous and thread-safe.
    """

    def __init__(self, workdir: Path, certs: DevCerts, signer: TokenSigner, *,
                 users: Sequence[SampleUser] = USERS, exchange_capabilities: bool = False,
                 imap_port: int = 0, smtp_port: int = 0, host: str = "127.0.0.1",
                 save_sent: bool = True, app_mailboxes: Sequence[str] = (),
                 app_principal: str = "", idle_timeout: float = IDLE_TIMEOUT,
                 login_burst: tuple[int, float] | None = None,
                 exchange_proxy: bool = False, smtp_auth_disabled: Sequence[str] = (),
                 smtp_rate: tuple[int, float] = (SMTP_MESSAGES_PER_MINUTE, 60.0)) -> None:
        self.workdir = Path(workdir).resolve()
        self.certs = certs
        self.signer = signer
        self.users = tuple(users)
        self.exchange_capabilities = exchange_capabilities
        # Exchange's personality: Dovecot listens on a port of its own and the proxy in
        # gateway.devstack.exchange_imap takes imap_port.
        # On in the tests and the demo (``--mail-mode=permissive`` / ``--permissive`` turn
        # it off); off by default here for the tests of Dovecot itself.
        self.exchange_proxy = exchange_proxy
        self.idle_timeout = idle_timeout
        self.login_burst = login_burst
        self._dovecot_port = 0
        self._proxy: ExchangeImapProxy | None = None
        self.imap_port = imap_port
        self.smtp_port = smtp_port
        self.host = host
        self.save_sent = save_sent
        self.outbound: list[SentMessage] = []
        # Exchange's SMTP AUTH rules (see SMTP_THREAD_LIMIT): mailboxes with SMTP AUTH off,
        # authenticated sessions open per mailbox, submissions in the rate window, and
        # recipients in the last day. The figures are Microsoft's; tests may lower them.
        self.smtp_auth_off = {m.lower() for m in smtp_auth_disabled}
        self.smtp_max_connections = SMTP_MAX_CONNECTIONS
        self.smtp_rate = smtp_rate
        self.smtp_recipients_per_day = SMTP_RECIPIENTS_PER_DAY
        self._smtp_open: collections.Counter[str] = collections.Counter()
        self._submitted: dict[str, collections.deque[float]] = {}
        self._recipients: dict[str, collections.deque[tuple[float, int]]] = {}
        # App-only access (the health canary), as Exchange grants it after
        # Add-MailboxPermission: only these mailboxes, only this service principal.
        self.app_mailboxes = tuple(m.lower() for m in app_mailboxes)
        self.app_principal = app_principal

        self._emails = {u.email.lower() for u in self.users}
        self._local_domains = {DOMAIN.lower()} | {e.rpartition("@")[2] for e in self._emails}
        self._lock = threading.Lock()
        self._refusals: list[str] = []
        self._reply_delays: list[float] = []
        self._last_usec = 0
        self._seq = 0
        self._pid = os.getpid()
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._smtp: _SMTPController | None = None
        self._prepared = False
        self._dirs: dict[tuple[str, str], str] = {}
        self._chown = os.geteuid() == 0

        # Who owns the mail and runs Dovecot.
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self.mail_uid, self.mail_gid = pw.pw_uid, pw.pw_gid
        else:
            self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
        self._mail_user = pwd.getpwuid(self.mail_uid).pw_name
        self._mail_group = grp.getgrgid(self.mail_gid).gr_name

        self.root = self._choose_root()
        d = self.root / "dovecot"
        self.conf_path = d / "dovecot.conf"
        self.log_path = d / "dovecot.log"
        self._stderr_path = d / "dovecot.stderr"
        self._base_dir = d / "run"
        self._state_dir = d / "state"
        self._tls_dir = d / "tls"
        self._keys_dir = d / "oauth2-keys"
        self._oauth2_conf = d / "oauth2.conf.ext"
        self._passwd = d / "users"
        self.mail_root = self.root / "mail"

    # ----------------------------------------------------------------------------- paths

    def _choose_root(self) -> Path:
        """Where Dovecot's config, state and mail live: ``workdir`` itself, unless the
        unprivileged mail user cannot reach it.

        Dovecot checks its mail directories with access(2), which ignores capabilities, so
        every directory above its files must be searchable by ``nobody``. pytest's
        ``/tmp/pytest-of-root`` is mode 0700 (and pytest resets it to that whenever a session
        starts), so under it we keep the files in a private temporary directory of our own
        (mode 0711, removed at exit) and leave ``workdir/mail`` and ``workdir/dovecot`` as
        symlinks to them."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or _reachable_by(self.workdir, self.mail_uid, self.mail_gid):
            return self.workdir
        existing = self.workdir / "mail"
        if existing.is_symlink() and existing.resolve().parent.is_dir():
            return existing.resolve().parent  # a second MailServer on the same workdir
        root = Path(tempfile.mkdtemp(prefix="gateway-devstack-mail-"))
        root.chmod(0o711)
        if not _reachable_by(root, self.mail_uid, self.mail_gid):
            raise MailServerError(
                f"neither {self.workdir} nor {root} is reachable by {self._mail_user}, who runs "
                "Dovecot; set TMPDIR to a world-searchable directory")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        for name in ("mail", "dovecot"):
            (root / name).mkdir(mode=0o711 if name == "mail" else 0o755)
            link = self.workdir / name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(root / name, target_is_directory=True)
        log.info("dev mail store for %s kept in %s (workdir not reachable by %s)",
                 self.workdir, root, self._mail_user)
        return root

    def home(self, email: str) -> Path:
        return self.mail_root / email.lower()

    def maildir(self, email: str) -> Path:
        """The user's Maildir root (the INBOX)."""
        return self.home(email) / "Maildir"

    def folder_path(self, email: str, folder: str) -> Path:
        """The on-disk Maildir++ directory for ``folder`` ("Committees/Planning" ->
        ``Maildir/.Committees.Planning``, names in modified UTF-7)."""
        parts = self._folder_parts(folder)
        if not parts:
            return self.maildir(email)
        return self.maildir(email) / ("." + ".".join(imap_utf7_encode(p) for p in parts))

    @staticmethod
    def _folder_parts(folder: str) -> list[str]:
        if folder.upper() == "INBOX":
            return []
        parts = folder.split(HIERARCHY_SEPARATOR)
        for p in parts:
            if not p.strip():
                raise ValueError(f"empty component in folder name {folder!r}")
            if "." in p or "\x00" in p or "\n" in p or "\r" in p or p.startswith("~"):
                # Maildir++ uses "." as its on-disk separator.
                raise ValueError(f"folder name {folder!r} cannot hold '.' here")
        return parts

    def _check_user(self, email: str) -> None:
        if email.lower() not in self._emails:
            raise KeyError(f"no such mailbox: {email}")

    # ----------------------------------------------------------------------------- store

    def _mkdir_owned(self, path: Path, mode: int = 0o700) -> None:
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            return
        if os.geteuid() == 0:
            os.chown(path, self.mail_uid, self.mail_gid)

    def _make_maildir(self, path: Path, subfolder: bool) -> None:
        if (path / "cur").is_dir():
            return
        self._mkdir_owned(path)
        for sub in ("cur", "new", "tmp"):
            self._mkdir_owned(path / sub)
        if subfolder:
            marker = path / "maildirfolder"
            if not marker.exists():
                marker.touch(mode=0o600)
                if os.geteuid() == 0:
                    os.chown(marker, self.mail_uid, self.mail_gid)

    def _ensure_user_dirs(self, email: str) -> None:
        self._mkdir_owned(self.mail_root, 0o711)
        self._mkdir_owned(self.home(email))
        self._make_maildir(self.maildir(email), subfolder=False)

    def ensure_folder(self, email: str, folder: str) -> None:
        """Create ``folder`` (and its parents) in ``email``'s mailbox if missing."""
        self._folder_dir(email, folder)

    def _folder_dir(self, email: str, folder: str) -> str:
        key = (email.lower(), folder)
        cached = self._dirs.get(key)
        if cached is not None:
            return cached
        self._check_user(email)
        parts = self._folder_parts(folder)
        self._ensure_user_dirs(email)
        self._subscribe(email, [])
        for i in range(1, len(parts) + 1):
            self._make_maildir(self.folder_path(email, HIERARCHY_SEPARATOR.join(parts[:i])),
                               subfolder=True)
            self._subscribe(email, parts[:i])
        path = str(self.folder_path(email, folder))
        self._dirs[key] = path
        return path

    def _subscribe(self, email: str, parts: list[str]) -> None:
        """Add the folder to Dovecot's subscriptions file, as Exchange has every folder
        subscribed (LSUB lists them). Format of Dovecot 2.3: a "V\t2" header, then one name
        per line, modified UTF-7, hierarchy levels separated by tabs."""
        name = "\t".join(imap_utf7_encode(p) for p in parts) if parts else "INBOX"
        path = self.maildir(email) / "subscriptions"
        with self._lock:
            try:
                lines = path.read_text("ascii").split("\n")
            except FileNotFoundError:
                lines = ["V\t2", ""]
            if name in lines[2:]:
                return
            body = [line for line in lines[2:] if line] + [name]
            tmp = path.with_name(f"subscriptions.{os.getpid()}.tmp")
            tmp.write_text("\n".join([*lines[:2], *body]) + "\n", "ascii")
            if self._chown:
                os.chown(tmp, self.mail_uid, self.mail_gid)
            os.replace(tmp, path)

    def _unique_name(self) -> str:
        # Dovecot gives new files UIDs in file-name order (seconds, then .M<usecs>), so
        # strictly increasing stamps keep UID order = delivery order.
        with self._lock:
            usec = time.time_ns() // 1000
            if usec <= self._last_usec:
                usec = self._last_usec + 1
            self._last_usec = usec
            self._seq += 1
            seq = self._seq
        return f"{usec // 1_000_000}.M{usec % 1_000_000}P{self._pid}Q{seq}.devstack"

    def deliver(self, email: str, message: bytes, folder: str = "INBOX",
                flags: Sequence[str] = (), internaldate: datetime | None = None) -> None:
        """Put ``message`` into ``email``'s ``folder`` with ``flags`` (system flags only) and
        ``internaldate`` (naive = UTC; default now). Synchronous; safe from any thread."""
        info = _maildir_info(flags)
        mtime = _utc_timestamp(internaldate) if internaldate else time.time()
        try:
            self._write_message(self._folder_dir(email, folder), message, info, mtime)
        except FileNotFoundError:  # the folder was deleted (over IMAP) since we saw it
            self._dirs.pop((email.lower(), folder), None)
            self._write_message(self._folder_dir(email, folder), message, info, mtime)

    def _write_message(self, directory: str, message: bytes, info: str, mtime: float,
                       staged: bool = True) -> None:
        """Write one Maildir file: into ``tmp/`` and renamed into ``cur/`` (atomic for a
        running Dovecot), or straight into ``cur/`` when ``staged`` is False (bulk loads of
        a folder nobody has open)."""
        data = message.replace(b"\r\n", b"\n")
        base = self._unique_name()
        size = len(data)
        # S= lets Dovecot skip a stat for RFC822.SIZE; W= (CRLF size) only when exact.
        vsize = size + data.count(b"\n")
        sizes = f",S={size}" + ("" if b"\r" in data else f",W={vsize}")
        final = f"{directory}/cur/{base}{sizes}:{info}"
        path = f"{directory}/tmp/{base}" if staged else final  # noqa: S108 - Maildir tmp/
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self._chown:
                os.fchown(fd, self.mail_uid, self.mail_gid)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        if staged:
            os.rename(path, final)

    def deliver_bulk(self, email: str, folder: str,
                     messages: Iterable[tuple[bytes, Sequence[str], datetime | None]]) -> int:
        """Write many messages into one folder quickly (no staging through ``tmp/``): for
        benchmarks and big fixtures, into a folder no client has open. Returns the count."""
        directory = self._folder_dir(email, folder)
        count = 0
        for message, flags, internaldate in messages:
            mtime = _utc_timestamp(internaldate) if internaldate else time.time()
            self._write_message(directory, message, _maildir_info(flags), mtime, staged=False)
            count += 1
        return count

    # ----------------------------------------------------------------------------- config

    def _prepare(self) -> None:
        if self._prepared:
            return
        d = self.conf_path.parent
        d.mkdir(exist_ok=True)
        d.chmod(0o755)
        for sub in (self._base_dir, self._state_dir, self._tls_dir):
            self._mkdir_owned(sub, 0o755 if sub == self._base_dir else 0o700)
        # A copy of the server key that the unprivileged Dovecot can read.
        key_copy, cert_copy = self._tls_dir / "server-key.pem", self._tls_dir / "server.pem"
        shutil.copyfile(self.certs.server_cert, cert_copy)
        fd = os.open(key_copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.certs.server_key.read_bytes())
        if os.geteuid() == 0:
            for p in (key_copy, cert_copy):
                os.chown(p, self.mail_uid, self.mail_gid)
        self.signer.write_dovecot_key(self._keys_dir, CLIENT_ID)
        for sub in self._keys_dir.rglob("*"):
            sub.chmod(0o755 if sub.is_dir() else 0o644)
        self._keys_dir.chmod(0o755)
        self._mkdir_owned(self.mail_root, 0o711)
        for u in self.users:
            self._ensure_user_dirs(u.email)
        if not self.log_path.exists():
            self.log_path.touch(mode=0o640)
        if os.geteuid() == 0:
            os.chown(self.log_path, self.mail_uid, self.mail_gid)
        self._passwd.write_text("".join(
            f"{u.email.lower()}::{self.mail_uid}:{self.mail_gid}::{self.home(u.email)}::"
            "nopassword\n"
            for u in self.users))
        self._oauth2_conf.write_text(
            "introspection_mode = local\n"
            f"local_validation_key_dict = fs:posix:prefix={self._keys_dir}/\n"
            "username_attribute = email\n"
            f"issuers = {ACCESS_ISSUER}\n"
            # Checked against the token's aud. No "scope =": Debian's build would then demand
            # a "scope" claim, which Entra tokens lack (they carry "scp").
            f"client_id = {OUTLOOK_AUDIENCE}\n")
        for p in (self._passwd, self._oauth2_conf):
            p.chmod(0o644)
        self._prepared = True

    def _dovecot_config(self) -> str:
        mailboxes = "\n".join(
            f'  mailbox "{name}" {{\n    special_use = {use}\n    auto = subscribe\n  }}'
            for name, use in SPECIAL_FOLDERS.items())
        mailboxes += "\n" + "\n".join(
            f'  mailbox "{name}" {{\n    auto = subscribe\n  }}' for name in NON_MAIL_FOLDERS)
        exchange = ""
        if self.exchange_capabilities:
            exchange = (f"imap_capability = {' '.join(EXCHANGE_IMAP_CAPABILITIES)}\n"
                        f"login_greeting = {EXCHANGE_GREETING}\n")
        # Exchange's 20 connections a mailbox; with the proxy it enforces them (with
        # Exchange's answer), Dovecot's limit sits just behind it as a net.
        max_connections = MAX_IMAP_CONNECTIONS + (5 if self.exchange_proxy else 0)
        return f"""\
# Generated by gateway.devstack.mailserver: a private, loopback-only Dovecot for the dev stack.
base_dir = {self._base_dir}
state_dir = {self._state_dir}
log_path = {self.log_path}
info_log_path = {self.log_path}
instance_name = gateway-devstack-{self.imap_port}
protocols = imap
listen = {self.host}
default_internal_user = {self._mail_user}
default_internal_group = {self._mail_group}
default_login_user = {self._mail_user}
first_valid_uid = 1
first_valid_gid = 1

ssl = required
ssl_cert = <{self._tls_dir / "server.pem"}
ssl_key = <{self._tls_dir / "server-key.pem"}
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = yes
auth_mechanisms = xoauth2
auth_failure_delay = 0
auth_verbose = yes
auth_verbose_passwords = no
login_trusted_networks = 127.0.0.0/8
# Only the sample users have mailboxes: anyone else fails here, before the token is checked.
passdb {{
  driver = passwd-file
  args = username_format=%Lu {self._passwd}
  result_success = continue
  result_failure = return-fail
  result_internalfail = return-fail
}}
passdb {{
  driver = oauth2
  args = {self._oauth2_conf}
}}
{self._app_passdb()}userdb {{
  driver = passwd-file
  args = username_format=%Lu {self._passwd}
}}

mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_list_index = no
namespace inbox {{
  inbox = yes
  prefix =
  separator = {HIERARCHY_SEPARATOR}
{mailboxes}
}}
{exchange}
protocol imap {{
  mail_max_userip_connections = {max_connections}
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self._dovecot_port or self.imap_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service auth-worker {{
  user = $default_internal_user
}}
"""

    def _app_passdb(self) -> str:
        """App-only XOAUTH2 for the canary mailboxes, as Exchange Online allows it once the
        app's service principal has mailbox permission (deploy/entra/canary-mailbox.md): the
        token names the application (idtyp=app, oid = the service principal, aud = Exchange's
        app resource), the mailbox comes from the XOAUTH2 user=."""
        if not self.app_mailboxes:
            return ""
        conf = self.conf_path.parent / "oauth2-app.conf.ext"
        conf.write_text(
            "introspection_mode = local\n"
            f"local_validation_key_dict = fs:posix:prefix={self._keys_dir}/\n"
            # Both sides of Dovecot's user-name check are expanded with this format: a
            # constant makes it pass; active_attribute/value then demand the app's principal.
            "username_attribute = oid\n"
            "username_format = app-only\n"
            "active_attribute = oid\n"
            f"active_value = {self.app_principal}\n"
            f"issuers = {ACCESS_ISSUER}\n"
            f"client_id = {EXCHANGE_APP_AUDIENCE}\n")
        conf.chmod(0o644)
        return (f"passdb {{\n  driver = oauth2\n  args = {conf}\n"
                f"  username_filter = {' '.join(self.app_mailboxes)}\n}}\n")

    def _dovecot_command(self) -> list[str]:
        cmd = ["dovecot", "-F", "-c", str(self.conf_path)]
        if os.geteuid() != 0:
            return ["setpriv", "--pdeathsig=TERM", *cmd]
        return ["setpriv", f"--reuid={self.mail_uid}", f"--regid={self.mail_gid}",
                "--clear-groups", "--pdeathsig=TERM", *cmd]

    # ----------------------------------------------------------------------------- IMAP

    @property
    def imap_running(self) -> bool:
        return self._dovecot is not None and self._dovecot.poll() is None

    async def start_imap(self) -> None:
        """Start Dovecot (on the same port as before, if it ran already)."""
        if self.imap_running:
            return
        if self._dovecot is not None:  # it died on its own: reap it and its group first
            await self.stop_imap()
        if not shutil.which("dovecot"):
            raise MailServerError("dovecot is not installed (scripts/install-system-deps.sh)")
        if self.imap_port == 0:
            self.imap_port = free_port(self.host)
        if self.exchange_proxy and self._dovecot_port == 0:
            self._dovecot_port = free_port(self.host)
        self._prepare()
        self.conf_path.write_text(self._dovecot_config())
        self.conf_path.chmod(0o644)
        with contextlib.suppress(FileNotFoundError):
            (self._base_dir / "master.pid").unlink()
        stderr = open(self._stderr_path, "wb")
        try:
            self._dovecot = subprocess.Popen(
                self._dovecot_command(), stdin=subprocess.DEVNULL, stdout=stderr,
                stderr=stderr, start_new_session=True, close_fds=True)
        finally:
            stderr.close()
        try:
            if self.exchange_proxy:
                self._proxy = ExchangeImapProxy(
                    self.host, self.imap_port, self._dovecot_port,
                    server_ssl=self._server_ssl_context(), upstream_ssl=self.client_ssl_context(),
                    idle_timeout=self.idle_timeout, login_burst=self.login_burst)
                await self._proxy.start()
            await self._wait_imap_ready()
        except BaseException:
            await self.stop_imap()
            raise

    async def _wait_imap_ready(self) -> None:
        ctx = self.client_ssl_context()
        deadline = time.monotonic() + _START_TIMEOUT
        last_error = "no answer"
        while time.monotonic() < deadline:
            assert self._dovecot is not None
            if self._dovecot.poll() is not None:
                raise MailServerError(
                    f"Dovecot exited with status {self._dovecot.returncode} during start-up.\n"
                    f"{self._diagnostics()}")
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.imap_port, ssl=ctx), 2)
                try:
                    greeting = await asyncio.wait_for(reader.readline(), 2)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await writer.wait_closed()
                if greeting.startswith(b"* OK"):
                    return
                last_error = f"unexpected greeting {greeting[:80]!r}"
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.02)
        raise MailServerError(
            f"Dovecot did not greet on {self.host}:{self.imap_port} within {_START_TIMEOUT:.0f}s "
            f"({last_error}).\n{self._diagnostics()}")

    def set_idle_timeout(self, seconds: float) -> None:
        """How long the Exchange proxy lets an IDLE run before it ends the session (new IDLEs
        from now on)."""
        self.idle_timeout = seconds
        if self._proxy is not None:
            self._proxy.idle_timeout = seconds

    def imap_logins(self, email: str) -> int:
        """Logins the Exchange proxy accepted for ``email`` since it started (0 without it)."""
        return self._proxy.logins[email.lower()] if self._proxy is not None else 0

    def imap_connected(self, email: str) -> int:
        """Logged-in IMAP sessions open now for ``email`` (through the Exchange proxy)."""
        return self._proxy.connected[email.lower()] if self._proxy is not None else 0

    def _diagnostics(self) -> str:
        return (f"--- {self.log_path} (tail) ---\n{_tail(self.log_path)}\n"
                f"--- {self._stderr_path} (tail) ---\n{_tail(self._stderr_path)}")

    def freeze_imap(self, frozen: bool = True) -> None:
        """Stop (SIGSTOP) or resume (SIGCONT) every Dovecot process: connections are still
        accepted by the kernel, but nothing answers (a hung server, not a dead one)."""
        if self._dovecot is not None:
            os.killpg(self._dovecot.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    async def stop_imap(self) -> None:
        """Stop Dovecot and every process it started (and the Exchange proxy). Idempotent."""
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            await proxy.stop()
        proc, self._dovecot = self._dovecot, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the master leads its own process group
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        # Whatever is left (a wedged master, or children it did not take down) is killed.
        for _ in range(200):
            if proc.poll() is not None and not group_members(pgid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            await asyncio.sleep(0.01)
        if proc.poll() is None:
            proc.wait(timeout=1)

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the dev CA (for tests and probes)."""
        return ssl.create_default_context(cafile=str(self.certs.ca_cert))

    # ----------------------------------------------------------------------------- SMTP

    def _server_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.certs.server_cert), str(self.certs.server_key))
        return ctx

    @property
    def smtp_running(self) -> bool:
        return self._smtp is not None

    async def start_smtp(self) -> None:
        """Start the SMTP submission server (on the same port as before, if it ran)."""
        if self._smtp is not None:
            return
        if self.smtp_port == 0:
            self.smtp_port = free_port(self.host)
        # aiosmtpd logs every command line, AUTH included, at INFO: never let that out.
        aiosmtpd_log = logging.getLogger("mail.log")
        if aiosmtpd_log.getEffectiveLevel() < logging.WARNING:
            aiosmtpd_log.setLevel(logging.WARNING)
        if not any(isinstance(f, _QuietAiosmtpd) for f in aiosmtpd_log.filters):
            aiosmtpd_log.addFilter(_QuietAiosmtpd())
        controller = _SMTPController(
            _SMTPHandler(self), hostname=self.host, port=self.smtp_port,
            server_hostname=f"smtp.{DOMAIN}", ident="Microsoft ESMTP MAIL Service (dev stack)",
            tls_context=self._server_ssl_context(), require_starttls=True,
            auth_required=True, auth_require_tls=True,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
            data_size_limit=SMTP_MAX_MESSAGE_SIZE, enable_SMTPUTF8=False,
            ready_timeout=_START_TIMEOUT)
        try:
            await asyncio.to_thread(controller.start)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(controller.stop, True)
            raise MailServerError(
                f"SMTP server failed to start on {self.host}:{self.smtp_port}: {exc}") from exc
        self._smtp = controller

    async def stop_smtp(self) -> None:
        """Stop the SMTP server, dropping open sessions. Idempotent."""
        controller, self._smtp = self._smtp, None
        if controller is not None:
            await asyncio.to_thread(controller.stop)

    def refuse_next(self, code: int = 554, message: str = "5.7.1 Message rejected") -> None:
        """Make the SMTP server refuse the next message at the end of DATA."""
        with self._lock:
            self._refusals.append(f"{code} {message}")

    def delay_next_reply(self, seconds: float) -> None:
        """Accept the next message, then hold the answer to its DATA for ``seconds``."""
        with self._lock:
            self._reply_delays.append(seconds)

    def _take_reply_delay(self) -> float:
        with self._lock:
            return self._reply_delays.pop(0) if self._reply_delays else 0.0

    def _take_refusal(self) -> str | None:
        with self._lock:
            return self._refusals.pop(0) if self._refusals else None

    def _is_local_domain(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() in self._local_domains

    def _is_local_user(self, address: str) -> bool:
        return address.lower() in self._emails

    def _check_xoauth2(self, blob: bytes) -> str | None:
        """The mailbox a SASL XOAUTH2 response authenticates, or None."""
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:
            return None
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        user = fields.get("user", "")
        auth = fields.get("auth", "")
        if not user or not auth.startswith("Bearer "):
            return None
        if self.app_mailboxes:
            app_user = self._check_app_only(user, auth[len("Bearer "):])
            if app_user is not None:
                return app_user
        try:
            claims = self.signer.verify(auth[len("Bearer "):], OUTLOOK_AUDIENCE)
        except jwt.InvalidTokenError:
            return None
        email = str(claims.get("email") or claims.get("upn") or "")
        scopes = str(claims.get("scp", "")).split()
        if email.lower() != user.lower() or SMTP_SEND_SCOPE not in scopes:
            return None
        if not self._is_local_user(user):
            return None
        return user

    def _check_app_only(self, user: str, token: str) -> str | None:
        """Exchange's rule for app-only SMTP AUTH: a token for Exchange's app resource, issued
        to the service principal, with the SMTP.SendAsApp role, for a mailbox that principal
        was given (FullAccess/SendAs) — nothing else."""
        try:
            claims = self.signer.verify(token, EXCHANGE_APP_AUDIENCE)
        except jwt.InvalidTokenError:
            return None
        if (claims.get("idtyp") == "app" and claims.get("oid") == self.app_principal
                and "SMTP.SendAsApp" in claims.get("roles", [])
                and user.lower() in self.app_mailboxes):
            return user
        return None

    def set_smtp_auth(self, email: str, enabled: bool) -> None:
        """Turn SMTP AUTH on or off for a mailbox (Set-CASMailbox
        -SmtpClientAuthenticationDisabled)."""
        with self._lock:
            (self.smtp_auth_off.discard if enabled else self.smtp_auth_off.add)(email.lower())

    def smtp_sessions(self, email: str) -> int:
        """Authenticated SMTP sessions open now for ``email``."""
        return self._smtp_sessions(email)

    def _smtp_sessions(self, email: str) -> int:
        with self._lock:
            return self._smtp_open[email.lower()]

    def _smtp_opened(self, email: str) -> None:
        with self._lock:
            self._smtp_open[email] += 1

    def _smtp_closed(self, email: str) -> None:
        with self._lock:
            self._smtp_open[email] = max(0, self._smtp_open[email] - 1)

    def _rate_delay(self, mail_from: str) -> float:
        """Seconds to hold this submission's delivery: none within the rate, else until the
        window that has room (Exchange carries the excess over to the following minutes)."""
        count, window = self.smtp_rate
        now = time.monotonic()
        with self._lock:
            q = self._submitted.setdefault(mail_from.lower(), collections.deque())
            while q and now - q[0] > window:
                q.popleft()
            # Each submission is placed at the later of now and its slot: the excess runs
            # ``window`` behind the one ``count`` places before it.
            at = max(now, q[-count] + window) if len(q) >= count else now
            q.append(at)
            return at - now

    def _within_recipient_quota(self, mail_from: str, recipients: int) -> bool:
        now = time.monotonic()
        with self._lock:
            q = self._recipients.setdefault(mail_from.lower(), collections.deque())
            while q and now - q[0][0] > 86400:
                q.popleft()
            if sum(n for _, n in q) + recipients > self.smtp_recipients_per_day:
                return False
            q.append((now, recipients))
            return True

    def _accept(self, mail_from: str, rcpt_tos: list[str], data: bytes, peer: str,
                hold: float = 0.0) -> str:
        if hold > 0:
            # Over the message rate: taken now, delivered when the window has room.
            timer = threading.Timer(hold, self._accept, (mail_from, rcpt_tos, data, peer))
            timer.daemon = True
            timer.start()
            return "250 2.0.0 OK Queued"
        local = [r for r in rcpt_tos if self._is_local_domain(r)]
        external = tuple(r for r in rcpt_tos if not self._is_local_domain(r))
        now = datetime.now(UTC)
        if local:
            received = (f"Received: from [{peer}] by smtp.{DOMAIN} with ESMTPSA;\r\n"
                        f"\t{format_datetime(now)}\r\n").encode("ascii")
            for rcpt in dict.fromkeys(r.lower() for r in local):
                self.deliver(rcpt, received + data, internaldate=now)
        if self.save_sent:
            self.deliver(mail_from, data, folder="Sent Items", flags=("\\Seen",),
                         internaldate=now)
        if external:
            with self._lock:
                self.outbound.append(SentMessage(mail_from, external, data))
        return "250 2.0.0 OK Queued"

    # ----------------------------------------------------------------------------- both

    async def start(self) -> None:
        """Start Dovecot and the SMTP server (ports are chosen now when given as 0)."""
        await self.start_imap()
        try:
            await self.start_smtp()
        except BaseException:
            await self.stop_imap()
            raise

    async def stop(self) -> None:
        """Stop both servers; no process is left behind. Idempotent."""
        try:
            await self.stop_smtp()
        finally:
            await self.stop_imap()

    async def __aenter__(self) -> MailServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
