"""The dev stack's real mail servers: a private Dovecot (IMAP, implicit TLS, XOAUTH2) and the
aiosmtpd submission server, talked to over real sockets with real clients."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aioimaplib
import aiosmtplib
import pytest
import pytest_asyncio

from gateway.devstack.mailserver import (
    EXCHANGE_IMAP_CAPABILITIES,
    MailServer,
    imap_utf7_decode,
    imap_utf7_encode,
    outlook_access_token,
)
from gateway.devstack.procs import group_members
from gateway.devstack.tokens import TokenSigner
from gateway.devstack.users import DOMAIN, SampleUser, user
from gateway.mail.imap_login import _answer_auth_challenge
from gateway.server.certs import DevCerts, make_dev_certs

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEMBER = user("member")
ADMIN = user("admin")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def signer() -> TokenSigner:
    return TokenSigner()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mail(tmp_path_factory: pytest.TempPathFactory, certs: DevCerts,
               signer: TokenSigner) -> AsyncIterator[MailServer]:
    server = MailServer(tmp_path_factory.mktemp("mail"), certs, signer)
    await server.start()
    yield server
    await server.stop()


def ca_context(certs: DevCerts) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca_cert))


async def imap_login(mail: MailServer, who_email: str, token: str) -> aioimaplib.IMAP4_SSL:
    imap = aioimaplib.IMAP4_SSL(mail.host, mail.imap_port, ssl_context=mail.client_ssl_context(),
                                timeout=10)
    await imap.wait_hello_from_server()
    response = await imap.xoauth2(who_email, token)
    assert response.result == "OK", response
    await imap.protocol.capability()  # aioimaplib keeps the pre-login set otherwise
    return imap


_source_counter = iter(range(2, 250))


def raw_xoauth2(mail: MailServer, user_name: str, token: str) -> bytes:
    """AUTHENTICATE XOAUTH2 over a raw TLS socket (answering the error challenge with an
    empty line) from a fresh 127.0.0.x address; returns the tagged reply line."""
    source = f"127.0.0.{next(_source_counter)}"
    sock = socket.create_connection((mail.host, mail.imap_port), timeout=10,
                                    source_address=(source, 0))
    with mail.client_ssl_context().wrap_socket(sock, server_hostname=mail.host) as tls:
        f = tls.makefile("rwb")
        assert f.readline().startswith(b"* OK")
        blob = base64.b64encode(f"user={user_name}\x01auth=Bearer {token}\x01\x01".encode())
        f.write(b"a AUTHENTICATE XOAUTH2 " + blob + b"\r\n")
        f.flush()
        line = f.readline()
        if line.startswith(b"+"):
            f.write(b"\r\n")
            f.flush()
            line = f.readline()
        return line


async def test_start_stop_leaves_no_processes(tmp_path: Path, certs: DevCerts,
                                              signer: TokenSigner) -> None:
    """start() brings up Dovecot (unprivileged) and SMTP; stop() leaves no process behind and
    may be called twice."""
    server = MailServer(tmp_path / "m", certs, signer)
    await server.start()
    assert server._dovecot is not None
    pgid = server._dovecot.pid
    members = group_members(pgid)
    assert len(members) >= 3  # master, log, config, auth, ...
    if os.geteuid() == 0:
        assert all(os.stat(f"/proc/{pid}").st_uid == server.mail_uid for pid in members)
    with socket.create_connection((server.host, server.smtp_port), timeout=5) as s:
        assert s.recv(100).startswith(b"220 ")
    await server.stop()
    assert group_members(pgid) == []
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.imap_port), timeout=1).close()
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.smtp_port), timeout=1).close()
    await server.stop()


async def test_xoauth2_login_and_select_count(mail: MailServer, signer: TokenSigner) -> None:
    """A valid Entra-shaped token logs in over XOAUTH2 and SELECT INBOX counts exactly the
    messages deliver() put there."""
    for i in range(3):
        mail.deliver(ADMIN.email, f"Subject: note {i}\n\nbody {i}\n".encode())
    imap = await imap_login(mail, ADMIN.email, outlook_access_token(signer, ADMIN))
    response = await imap.select("INBOX")
    assert response.result == "OK"
    assert b"3 EXISTS" in response.lines
    await imap.logout()


@pytest.mark.parametrize("case", ["forged", "expired", "not-yet-valid", "audience",
                                  "other-email", "issuer", "unknown-user"])
async def test_bad_tokens_are_refused(mail: MailServer, signer: TokenSigner, case: str) -> None:
    """Dovecot refuses a token signed by another key, expired, not valid until later, for
    another audience or issuer, naming another mailbox, or for a user with no mailbox."""
    login = MEMBER.email
    if case == "forged":
        token = outlook_access_token(TokenSigner(kid=signer.kid), MEMBER)
    elif case == "expired":
        token = outlook_access_token(signer, MEMBER, now=time.time() - 7200)
    elif case == "not-yet-valid":
        later = int(time.time()) + 600
        token = outlook_access_token(signer, MEMBER, iat=later, nbf=later)
    elif case == "audience":
        token = outlook_access_token(signer, MEMBER, aud="https://graph.microsoft.com")
    elif case == "issuer":
        token = outlook_access_token(signer, MEMBER, iss="https://login.example/")
    elif case == "other-email":
        token = outlook_access_token(signer, ADMIN)
    else:
        login = f"nobody.here@{DOMAIN}"
        token = outlook_access_token(signer, MEMBER, email=login, upn=login)
    reply = await asyncio.to_thread(raw_xoauth2, mail, login, token)
    assert reply.startswith(b"a NO"), reply


async def test_raw_xoauth2_accepts_valid_token(mail: MailServer, signer: TokenSigner) -> None:
    """The raw helper used for the refusals does succeed with a good token (so a NO above
    means the token, not the helper)."""
    reply = await asyncio.to_thread(raw_xoauth2, mail, MEMBER.email,
                                    outlook_access_token(signer, MEMBER))
    assert reply.startswith(b"a OK"), reply


async def test_tokens_log_in_the_moment_a_second_turns(mail: MailServer,
                                                       signer: TokenSigner) -> None:
    """A token made just after a second turns is accepted at once. Dovecot reads the clock
    with C's time(), which can still show the second before for a few milliseconds; a token
    dated "now" was refused then as not valid yet (half the logins timed this way, and one in
    150-250 of all logins, failed before the stand-ins dated tokens five minutes back as Entra
    does: gateway.devstack.tokens)."""
    for _ in range(6):
        imap = aioimaplib.IMAP4_SSL(mail.host, mail.imap_port,
                                    ssl_context=mail.client_ssl_context(), timeout=10)
        await imap.wait_hello_from_server()
        _answer_auth_challenge(imap)  # a refusal answers NO at once instead of hanging
        await asyncio.sleep(1 - time.time() % 1 + 0.0002)
        response = await imap.xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))
        assert response.result == "OK", response
        await imap.logout()


async def test_list_shows_exchange_folders(mail: MailServer, signer: TokenSigner) -> None:
    """LIST shows Exchange's folder names with special-use attributes, "/" as separator, the
    non-mail folders, nested and non-ASCII folders; NAMESPACE is Exchange's; LSUB lists them
    all (Exchange has every folder subscribed)."""
    mail.ensure_folder(MEMBER.email, "Committees/Planning")
    mail.ensure_folder(MEMBER.email, "Ward – Llanfair Café")
    imap = await imap_login(mail, MEMBER.email, outlook_access_token(signer, MEMBER))
    listing = await imap.list('""', "*")
    entries = {}
    for line in listing.lines[:-1]:
        m = re.match(rb'\(([^)]*)\) "(.)" (.+)$', line)
        assert m, line
        assert m.group(2) == b"/"
        entries[m.group(3).decode().strip('"')] = set(m.group(1).decode().split())
    assert "\\Sent" in entries["Sent Items"]
    assert "\\Trash" in entries["Deleted Items"]
    assert "\\Junk" in entries["Junk Email"]
    assert "\\Drafts" in entries["Drafts"]
    assert "\\Archive" in entries["Archive"]
    assert {"INBOX", "Calendar", "Contacts", "Tasks", "Committees/Planning"} <= set(entries)
    assert "\\HasChildren" in entries["Committees"]
    assert imap_utf7_encode("Ward – Llanfair Café") in entries
    namespace = await imap.namespace()
    assert namespace.lines[0] == b'(("" "/")) NIL NIL'
    subscribed = await imap.lsub('""', "*")
    text = b"\n".join(subscribed.lines)
    for name in (b"INBOX", b'"Sent Items"', b"Committees", b"Committees/Planning",
                 imap_utf7_encode("Ward – Llanfair Café").encode()):
        assert name in text, name
    await imap.logout()


async def test_deliver_sets_flags_and_internaldate(mail: MailServer, signer: TokenSigner) -> None:
    """deliver() into a folder gives the message its flags and INTERNALDATE, in order."""
    when = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
    mail.deliver(MEMBER.email, b"Subject: a\n\nA\n", folder="Archive",
                 flags=["\\Seen", "\\Flagged"], internaldate=when)
    mail.deliver(MEMBER.email, b"Subject: b\r\n\r\nB\r\n", folder="Archive",
                 flags=["\\Answered"])
    with pytest.raises(ValueError):
        mail.deliver(MEMBER.email, b"x", flags=["$Forwarded"])
    with pytest.raises(KeyError):
        mail.deliver("stranger@elsewhere.example", b"x")
    imap = await imap_login(mail, MEMBER.email, outlook_access_token(signer, MEMBER))
    await imap.select("Archive")
    fetched = await imap.fetch("1:*", "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])")
    text = b"\n".join(bytes(x) for x in fetched.lines)
    first, second = re.findall(rb"\d+ FETCH \(FLAGS \(([^)]*)\) INTERNALDATE \"([^\"]+)\"", text)
    assert set(first[0].split()) >= {b"\\Seen", b"\\Flagged"}
    assert b"\\Answered" in second[0].split()
    assert datetime.strptime(first[1].decode(), "%d-%b-%Y %H:%M:%S %z") == when
    assert text.index(b"Subject: a") < text.index(b"Subject: b")
    await imap.logout()


async def test_idle_sees_a_delivery(mail: MailServer, signer: TokenSigner) -> None:
    """A client in IDLE is told about a message deliver() writes (Dovecot notices the store
    change without a poll from the client)."""
    imap = await imap_login(mail, user("member2").email,
                            outlook_access_token(signer, user("member2")))
    await imap.select("INBOX")
    idle = await imap.idle_start(timeout=10)
    await asyncio.sleep(0.1)
    mail.deliver(user("member2").email, b"Subject: new while idle\n\nhello\n")
    pushed = await imap.wait_server_push(timeout=8)
    imap.idle_done()
    await asyncio.wait_for(idle, 5)
    assert any(b"EXISTS" in bytes(line) for line in pushed), pushed
    await imap.logout()


async def test_stop_and_start_imap_on_same_port(mail: MailServer, signer: TokenSigner) -> None:
    """stop_imap() takes Dovecot down (connections refused) and start_imap() brings it back on
    the same port with the mail intact, also after Dovecot was killed outright."""
    port = mail.imap_port
    await mail.stop_imap()
    with pytest.raises(OSError):
        socket.create_connection((mail.host, port), timeout=1).close()
    await mail.start_imap()
    assert mail.imap_port == port
    # A Dovecot that dies on its own (killed) is also brought back by start_imap().
    assert mail._dovecot is not None
    os.killpg(mail._dovecot.pid, signal.SIGKILL)
    await asyncio.sleep(0.1)
    assert not mail.imap_running
    await mail.start_imap()
    imap = await imap_login(mail, ADMIN.email, outlook_access_token(signer, ADMIN))
    response = await imap.select("INBOX")
    assert b"3 EXISTS" in response.lines
    await imap.logout()


async def test_exchange_capabilities_mode(tmp_path: Path, certs: DevCerts,
                                          signer: TokenSigner) -> None:
    """exchange_capabilities=True advertises exactly Exchange Online's set (before login plus
    AUTH=XOAUTH2 and LOGINDISABLED, as Exchange does), and the features behind it work."""
    server = MailServer(tmp_path / "x", certs, signer, exchange_capabilities=True)
    await server.start_imap()
    try:
        imap = aioimaplib.IMAP4_SSL(server.host, server.imap_port,
                                    ssl_context=ca_context(certs), timeout=10)
        await imap.wait_hello_from_server()
        await imap.protocol.capability()
        assert imap.protocol.capabilities == {*EXCHANGE_IMAP_CAPABILITIES, "AUTH=XOAUTH2",
                                              "LOGINDISABLED"}
        assert (await imap.xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))
                ).result == "OK"
        await imap.protocol.capability()
        assert imap.protocol.capabilities == set(EXCHANGE_IMAP_CAPABILITIES)
        server.deliver(MEMBER.email, b"Subject: move me\n\nx\n")
        await imap.select("INBOX")
        assert (await imap.move("1", '"Deleted Items"')).result == "OK"
        await imap.logout()
    finally:
        await server.stop()


async def test_modified_utf7_round_trip() -> None:
    """Folder names encode to IMAP modified UTF-7 as RFC 3501 shows, and back."""
    assert imap_utf7_encode("Ward – Llanfair Café") == "Ward &IBM- Llanfair Caf&AOk-"
    assert imap_utf7_encode("R&D") == "R&-D"
    assert imap_utf7_encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    for name in ("Ward – Llanfair Café", "R&D", "日本語 & more", "plain"):
        assert imap_utf7_decode(imap_utf7_encode(name)) == name


# ------------------------------------------------------------------------------------ SMTP

def smtp_client(mail: MailServer, certs: DevCerts, **kw: object) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=mail.host, port=mail.smtp_port, start_tls=True,
                           tls_context=ca_context(certs), timeout=10, **kw)  # type: ignore[arg-type]


def big_token(signer: TokenSigner, who: SampleUser = MEMBER, **kw: object) -> str:
    # Entra access tokens run to several KB (group claims, wids, ...).
    token = outlook_access_token(signer, who, groups=[f"{i:08x}-aaaa-4bbb-8ccc-0123456789ab"
                                                     for i in range(60)], **kw)  # type: ignore[arg-type]
    assert len(token) > 3000
    return token


async def test_smtp_ehlo_offers_starttls_then_xoauth2(mail: MailServer, certs: DevCerts) -> None:
    """EHLO offers STARTTLS and no AUTH in clear; after STARTTLS, AUTH XOAUTH2 only."""
    client = aiosmtplib.SMTP(hostname=mail.host, port=mail.smtp_port, start_tls=False,
                             tls_context=ca_context(certs), timeout=10)
    await client.connect()
    await client.ehlo()
    assert client.supports_extension("starttls")
    assert not client.supports_extension("auth")
    response = await client.execute_command(b"MAIL", f"FROM:<{MEMBER.email}>".encode())
    assert response.code == 530
    await client.starttls()
    await client.ehlo()
    assert client.esmtp_extensions["auth"].split() == ["XOAUTH2"]
    assert int(client.esmtp_extensions["size"]) == 35 * 1024 * 1024
    await client.quit()


async def test_smtp_send_delivers_locally_and_captures_outbound(
        mail: MailServer, certs: DevCerts, signer: TokenSigner) -> None:
    """An XOAUTH2 send with an Entra-sized token delivers to the local recipient's INBOX (seen
    over IMAP), saves a \\Seen copy in the sender's Sent Items, and captures the external
    recipient in outbound."""
    msg = EmailMessage()
    msg["From"] = MEMBER.email
    msg["To"] = f"{ADMIN.email}, someone@outside.example"
    msg["Subject"] = "Planning committee – papers"
    msg.set_content("See you at 7.\n")
    async with smtp_client(mail, certs) as client:
        await client.auth_xoauth2(MEMBER.email, big_token(signer))
        errors, _ = await client.send_message(msg)
        assert errors == {}
    assert mail.outbound[-1].rcpt_tos == ("someone@outside.example",)
    assert mail.outbound[-1].mail_from == MEMBER.email
    assert b"Planning committee" in mail.outbound[-1].data

    imap = await imap_login(mail, ADMIN.email, outlook_access_token(signer, ADMIN))
    await imap.select("INBOX")
    found = await imap.search("SUBJECT", '"Planning committee"')
    assert found.lines[0].split(), found
    await imap.logout()
    imap = await imap_login(mail, MEMBER.email, outlook_access_token(signer, MEMBER))
    await imap.select('"Sent Items"')
    found = await imap.search("SEEN", "SUBJECT", '"Planning committee"')
    assert found.lines[0].split(), found
    await imap.logout()


@pytest.mark.parametrize("case", ["forged", "no-send-scope", "other-user", "audience"])
async def test_smtp_bad_token_gets_535(mail: MailServer, certs: DevCerts, signer: TokenSigner,
                                       case: str) -> None:
    """A forged token, one without SMTP.Send, one naming another user, or for another
    audience is answered 535 5.7.3 like Exchange."""
    token = {
        "forged": lambda: outlook_access_token(TokenSigner(kid=signer.kid), MEMBER),
        "no-send-scope": lambda: outlook_access_token(signer, MEMBER,
                                                      scp="IMAP.AccessAsUser.All"),
        "other-user": lambda: outlook_access_token(signer, ADMIN),
        "audience": lambda: outlook_access_token(signer, MEMBER,
                                                 aud="https://graph.microsoft.com"),
    }[case]()
    async with smtp_client(mail, certs) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as err:
            await client.auth_xoauth2(MEMBER.email, token)
    assert err.value.code == 535
    assert "5.7.3" in err.value.message


async def test_smtp_wrong_mail_from_gets_550(mail: MailServer, certs: DevCerts,
                                             signer: TokenSigner) -> None:
    """MAIL FROM someone other than the signed-in user is refused with Exchange's 5.7.60."""
    async with smtp_client(mail, certs) as client:
        await client.auth_xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as err:
            await client.sendmail(ADMIN.email, [ADMIN.email], b"Subject: x\r\n\r\nx\r\n")
    assert err.value.code == 550
    assert "5.7.60" in err.value.message


async def test_smtp_refuses_oversize_declared_message(mail: MailServer, certs: DevCerts,
                                                     signer: TokenSigner) -> None:
    """A MAIL FROM declaring more than Exchange's 35 MB is refused with 552."""
    async with smtp_client(mail, certs) as client:
        await client.auth_xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))
        response = await client.execute_command(
            b"MAIL", f"FROM:<{MEMBER.email}>".encode(), b"SIZE=40000000")
    assert response.code == 552


async def test_smtp_unknown_local_recipient_gets_550(mail: MailServer, certs: DevCerts,
                                                     signer: TokenSigner) -> None:
    """RCPT TO an address in the council's domain with no mailbox is 550 5.1.1."""
    async with smtp_client(mail, certs) as client:
        await client.auth_xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as err:
            await client.sendmail(MEMBER.email, [f"ghost@{DOMAIN}"], b"Subject: x\r\n\r\nx\r\n")
    assert err.value.recipients[0].code == 550


async def test_smtp_refuse_next(mail: MailServer, certs: DevCerts, signer: TokenSigner) -> None:
    """refuse_next() makes the next DATA fail with the given reply; the one after succeeds."""
    before = len(mail.outbound)
    mail.refuse_next(554, "5.7.1 Message rejected as spam")
    async with smtp_client(mail, certs) as client:
        await client.auth_xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))
        with pytest.raises(aiosmtplib.SMTPDataError) as err:
            await client.sendmail(MEMBER.email, ["a@outside.example"], b"Subject: 1\r\n\r\n1\r\n")
        await client.sendmail(MEMBER.email, ["a@outside.example"], b"Subject: 2\r\n\r\n2\r\n")
    assert err.value.code == 554
    assert "spam" in err.value.message
    assert len(mail.outbound) == before + 1


async def test_stop_and_start_smtp_on_same_port(mail: MailServer, certs: DevCerts,
                                                signer: TokenSigner) -> None:
    """stop_smtp() refuses connections; start_smtp() serves again on the same port."""
    port = mail.smtp_port
    await mail.stop_smtp()
    with pytest.raises(OSError):
        socket.create_connection((mail.host, port), timeout=1).close()
    await mail.start_smtp()
    assert mail.smtp_port == port
    async with smtp_client(mail, certs) as client:
        await client.auth_xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))


async def test_exchange_proxy_refuses_what_exchange_refuses(tmp_path: Path, certs: DevCerts,
                                                            signer: TokenSigner) -> None:
    """The Exchange IMAP proxy: SORT and SEARCH RETURN refused with Exchange's words, a
    charset other than US-ASCII refused with BADCHARSET, plain US-ASCII search still works.
    Its greeting and its answer to the login are Exchange's, without capabilities; asked
    for, they are Exchange's list."""
    server = MailServer(tmp_path / "x", certs, signer, exchange_capabilities=True,
                        exchange_proxy=True)
    await server.start_imap()
    try:
        greeting: list[bytes] = []
        imap = aioimaplib.IMAP4_SSL(server.host, server.imap_port,
                                    ssl_context=ca_context(certs), timeout=10)
        welcome = imap.protocol.welcome

        async def note(line: bytes) -> None:
            greeting.append(line)
            await welcome(line)
        imap.protocol.welcome = note
        await imap.wait_hello_from_server()
        assert greeting[0].startswith(b"* OK The Microsoft Exchange IMAP4 service is ready. [")
        assert b"CAPABILITY" not in greeting[0]
        login = await imap.xoauth2(MEMBER.email, outlook_access_token(signer, MEMBER))
        assert login.result == "OK" and login.lines == [b"AUTHENTICATE completed."]
        await imap.protocol.capability()
        assert imap.protocol.capabilities == set(EXCHANGE_IMAP_CAPABILITIES)
        server.deliver(MEMBER.email, b"Subject: hello there\n\nx\n")
        await imap.select("INBOX")
        r = await imap.search('SUBJECT "hello"', charset="UTF-8")
        assert r.result == "NO" and b"[BADCHARSET (US-ASCII)]" in r.lines[-1]
        r = await imap.search('SUBJECT "hello"', charset=None)
        assert r.result == "OK" and r.lines[0].strip() == b"1"
        r = await imap.search("RETURN (ALL) ALL", charset=None)
        assert r.result == "BAD" and b"Command Argument Error. 11" in r.lines[-1]
        await imap.logout()
    finally:
        await server.stop_imap()
