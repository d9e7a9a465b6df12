"""Make a very large folder in a dev mailbox, fast, for scale benchmarks.

    python bench/make_big_mailbox.py --workdir /tmp/big --count 100000 [--check]

Messages are written straight into the Maildir store (no IMAP APPEND, no staging through
tmp/): 100,000 small but realistic messages take well under a minute. Dates run one per
minute up to now, so UID order is date order; about 85 % are \\Seen and 3 % \\Flagged.
``--check`` then starts the dev Dovecot and reports how long the first SELECT of the folder
takes (Dovecot indexes it then) and a second one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from gateway.devstack.mailserver import MailServer

_SENDERS = (
    "Democratic Services <democratic.services@council.example>",
    "Planning Team <planning@council.example>",
    "=?utf-8?q?Si=C3=A2n_Roberts?= <sian.roberts@mail.example>",
    "Gareth Price <g.price@mail.example>",
    "Local Government Bulletin <bulletin@newsletter.example>",
    "=?utf-8?q?Zo=C3=AB_Clarke?= <zoe.clarke@post.example>",
)
_SUBJECTS = (
    "Planning Committee papers",
    "Pothole on Heol y Llan",
    "=?utf-8?q?Caf=C3=A9_licence_=E2=80=93_Stryd_Fawr?=",
    "Budget consultation",
    "Re: Missed bin collection",
    "Ward surgery arrangements",
    "Street light out on Station Road",
)
_BODY = (
    "Dear Councillor,\n\nThank you for raising this with me. Officers have been out to "
    "inspect and a repair has been scheduled for next week.\n\nMessage {n} of the benchmark "
    "folder.\n\nRegards,\nCouncil officer\n")


def _messages(email: str, count: int, now: datetime,
              seed: int) -> Iterator[tuple[bytes, Sequence[str], datetime]]:
    rng = random.Random(seed)
    start = now - timedelta(minutes=count)
    for n in range(count):
        date = start + timedelta(minutes=n)
        sender = _SENDERS[n % len(_SENDERS)]
        subject = _SUBJECTS[(n * 7) % len(_SUBJECTS)]
        head = (f"From: {sender}\nTo: {email}\nSubject: {subject} [{n}]\n"
                f"Date: {format_datetime(date)}\nMessage-ID: <big.{n}.{seed}@council.example>\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                "Content-Transfer-Encoding: 8bit\n\n")
        flags: list[str] = []
        r = rng.random()
        if r < 0.85:
            flags.append("\\Seen")
        if r > 0.97:
            flags.append("\\Flagged")
        yield (head + _BODY.format(n=n)).encode(), flags, date


def make_big_folder(mail: MailServer, email: str, folder: str, count: int) -> None:
    """Add ``count`` messages to ``email``'s ``folder`` (created if missing) by writing the
    Maildir files directly. Do it before clients open the folder."""
    mail.ensure_folder(email, folder)
    mail.deliver_bulk(email, folder, _messages(email, count, datetime.now(UTC), seed=count))


async def _check(mail: MailServer, email: str, folder: str) -> None:
    import aioimaplib

    from gateway.devstack.mailserver import imap_utf7_encode, outlook_access_token
    from gateway.devstack.users import by_email

    who = by_email(email)
    if who is None:
        raise SystemExit(f"{email} is not a sample user")
    await mail.start_imap()
    try:
        for attempt in ("first", "second"):
            imap = aioimaplib.IMAP4_SSL(mail.host, mail.imap_port,
                                        ssl_context=mail.client_ssl_context(), timeout=600)
            await imap.wait_hello_from_server()
            await imap.xoauth2(email, outlook_access_token(mail.signer, who))
            t = time.perf_counter()
            response = await imap.select(f'"{imap_utf7_encode(folder)}"')
            took = time.perf_counter() - t
            exists = next((line.decode() for line in response.lines
                           if line.endswith(b"EXISTS")), "?")
            print(f"{attempt} SELECT: {took:.2f} s ({exists})")
            await imap.logout()
    finally:
        await mail.stop()


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.devstack.tokens import TokenSigner
    from gateway.devstack.users import user
    from gateway.server.certs import make_dev_certs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True,
                        help="the dev mail server's work directory (created if missing)")
    parser.add_argument("--email", default=user("member").email)
    parser.add_argument("--folder", default="Big folder")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--check", action="store_true",
                        help="start Dovecot afterwards and time SELECT of the folder")
    args = parser.parse_args(argv)

    mail = MailServer(args.workdir / "mail", make_dev_certs(args.workdir / "certs"),
                      TokenSigner())
    t = time.perf_counter()
    make_big_folder(mail, args.email, args.folder, args.count)
    took = time.perf_counter() - t
    print(f"{args.count} messages in {args.folder!r} for {args.email}: {took:.1f} s "
          f"({args.count / took:.0f}/s) -> {mail.folder_path(args.email, args.folder)}")
    if args.check:
        asyncio.run(_check(mail, args.email, args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
