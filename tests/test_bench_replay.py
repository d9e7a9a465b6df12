"""bench/replay.py, the recorder and raw replayer of a page's IMAP conversation that
``bench/inbox_latency.py`` uses for the cold page's floor: checked against the dev stack's
Dovecot, since a replay that stopped early, or read a literal's contents as a completion,
would print a floor lower than the truth."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from gateway.devstack.stack import DevStack
from gateway.devstack.tokens import OUTLOOK_AUDIENCE
from gateway.devstack.users import user
from gateway.mail import imap_login, mailbox
from tests.conftest import LoopThread

# Appended, so that the bench scripts' module names cannot shadow anything else.
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))

from replay import Conversation, Turn, _read_response, recording


def _token(stack: DevStack) -> str:
    assert stack.entra is not None
    token: str = stack.entra.issue_access_token(user("member"), OUTLOOK_AUDIENCE,
                                                ["IMAP.AccessAsUser.All"])
    return token


def _replay(stack: DevStack, loop: LoopThread, talk: Conversation) -> float:
    mail = stack.mail
    assert mail is not None
    return loop.run(talk.replay(mail.host, mail.imap_port, mail.client_ssl_context(),
                                user("member").email, _token(stack)), timeout=30)


def test_a_cold_folder_page_is_recorded_and_replayed(stack: DevStack,
                                                     loop_thread: LoopThread) -> None:
    mail, certs = stack.mail, stack.certs
    assert mail is not None and certs is not None
    target = imap_login.ImapTarget(mail.host, mail.imap_port,
                                   imap_login.ssl_context(str(certs.ca_cert)), 15)
    token = _token(stack)

    async def page() -> None:
        async with imap_login.connect(target, user("member").email, token) as conn:
            await mailbox.folders_and_page(conn, "INBOX")

    with recording() as talks:
        loop_thread.run(page())
    talk = Conversation.of(talks)
    # The gateway's cold page: SELECT and LIST together, then the FETCH and a STATUS batch;
    # before them a CAPABILITY where the login's answer carried none (as Exchange's does not).
    # How the later commands fall into turns depends on when the answers arrive; the SELECT
    # and the LIST always go in one write, and the FETCH only once the SELECT is done.
    asked = [c for c in talk.commands if c != "CAPABILITY"]
    assert asked[:3] == ["SELECT", "LIST", "FETCH"] and asked[3].startswith("STATUS")
    assert talk.login_tag in talk.turns[0].after
    select = next(i for i, turn in enumerate(talk.turns) if b" SELECT " in turn.data)
    assert talk.turns[select].data.count(b"\r\n") == 2   # SELECT and LIST
    select_tag = talk.turns[select].data.split(b" ", 1)[0]
    fetch = next(turn for turn in talk.turns if b" FETCH " in turn.data)
    assert select_tag in fetch.after
    assert not any(token.encode() in turn.data for turn in talk.turns)
    # LOGOUT (the connection's end) is not part of what is replayed or timed.
    assert not any(b" LOGOUT" in turn.data for turn in talk.turns)
    assert _replay(stack, loop_thread, talk) > 0


def test_a_refused_command_in_a_replay_is_an_error(stack: DevStack,
                                                   loop_thread: LoopThread) -> None:
    talk = Conversation(b"A0", (Turn(b'A1 SELECT "No such folder"\r\n', frozenset({b"A0"})),),
                        frozenset({b"A0", b"A1"}), ("SELECT",))
    with pytest.raises(RuntimeError, match=re.escape("b'A1' was refused")):   # not the login, A0
        _replay(stack, loop_thread, talk)


def test_a_literal_is_read_by_its_size_not_for_completions() -> None:
    async def read() -> tuple[set[bytes], bytes]:
        reader = asyncio.StreamReader()
        body = b"A1 OK looks like a completion\r\n"
        reader.feed_data(b"* 1 FETCH (UID 9 BODY[1]<0> {%d}\r\n" % len(body) + body
                         + b")\r\nA1 OK Fetch completed.\r\n")
        reader.feed_eof()
        done: set[bytes] = set()
        await _read_response(reader, done)       # the FETCH response, literal and all
        after_fetch = set(done)
        await _read_response(reader, done)       # the completion
        return after_fetch, b"".join(sorted(done))

    after_fetch, done = asyncio.run(read())
    assert after_fetch == set()
    assert done == b"A1"
