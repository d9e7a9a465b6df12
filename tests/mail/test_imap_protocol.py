"""The gateway's FETCH reader (gateway.mail.imap_protocol) answers as aioimaplib's does.

``_FetchCommand`` keeps its parenthesis count as lines arrive instead of recounting every
line at each new one, and notes the time of the last line instead of re-arming a timer.
These tests feed both commands the same lines and compare ``wait_data`` after each, and
check that the timeout still counts from the last line heard; and they hold a batch of
STATUS commands (``status_many``) to one write, any order of answers and no command left
pending. Its reader of the bytes received (``_handle_responses``, a loop where aioimaplib's
called itself once per line) cuts any bytes, in any chunks, into the same lines, literals
and answers as aioimaplib's, and reads an answer of thousands of lines in one chunk, which
aioimaplib's could not. The whole mail suite runs the client against Dovecot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aioimaplib import aioimaplib
from aioimaplib.aioimaplib import Command, CommandTimeout, FetchCommand
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail.imap import THROTTLED
from gateway.mail.imap_mailboxes import parse_status
from gateway.mail.imap_protocol import _FetchCommand, _Protocol, login_capabilities

# Pieces a FETCH response is made of, as aioimaplib hands them to the command: lines
# (untagged prefix removed), literals (bytearray), the bits after a literal.
PIECES = [b"1 FETCH (UID 7 FLAGS (\\Seen))", b"12 FETCH (UID 9 BODY[1] {5}",
          bytearray(b"a(b)c"), bytearray(b"((("), b")", b" FLAGS ())", b"ENVELOPE (NIL",
          b"\"x)\")", b"", b"3 FETCH (", b"2 EXISTS", b"9 FETCH (UID 1 BODYSTRUCTURE (("]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_wait_data_matches_aioimaplib(lines: list[bytes]) -> None:
    async def run() -> None:
        ours = _FetchCommand("A1", "1:*", "(UID)", timeout=None)
        theirs = FetchCommand("A1", "1:*", "(UID)", timeout=None)
        assert ours.wait_data() == theirs.wait_data()
        for line in lines:
            ours.append_to_resp(line)
            theirs.append_to_resp(line)
            assert ours.wait_data() == theirs.wait_data(), line
    asyncio.run(run())


async def test_timeout_counts_from_the_last_line() -> None:
    cmd = _FetchCommand("A1", "1:*", "(UID)", timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # A line every 0.1 s for 0.6 s: twice the timeout in all, never 0.3 s apart.
    for _ in range(6):
        await asyncio.sleep(0.1)
        cmd.append_to_resp(b"1 FETCH (UID 1)")
    assert not cmd._event.is_set()
    try:
        await asyncio.wait_for(cmd.wait(), 2)
    except CommandTimeout:
        pass
    else:
        raise AssertionError("the command finished without its timeout")
    waited = loop.time() - started
    # Timed out 0.3 s after the last line (0.6 s in), not 0.3 s after the start.
    assert 0.85 <= waited < 1.5, waited


async def test_a_closed_command_does_not_time_out() -> None:
    cmd = _FetchCommand("A1", "1:*", "(UID)", timeout=0.1)
    cmd.append_to_resp(b"1 FETCH (UID 1)")
    cmd.close(b"OK done", "OK")
    await cmd.wait()
    await asyncio.sleep(0.3)
    assert cmd.response.result == "OK"


def test_capabilities_sent_with_the_login_are_read_and_nothing_else_is() -> None:
    """The capabilities a server sends with its OK to AUTHENTICATE: an untagged CAPABILITY
    (aioimaplib drops the "* ") or a CAPABILITY code opening the tagged text. Exchange's
    answer has none (ask, then); a list without IMAP4rev1, or a code anywhere but the
    tagged text, is not taken for one."""
    dovecot = [b"CAPABILITY IMAP4rev1 SASL-IR MOVE IDLE", b"Logged in"]
    assert login_capabilities(dovecot) == {"IMAP4rev1", "SASL-IR", "MOVE", "IDLE"}
    assert login_capabilities([b"[CAPABILITY IMAP4rev1 UIDPLUS] Logged in"]) == {
        "IMAP4rev1", "UIDPLUS"}
    assert login_capabilities([b"AUTHENTICATE completed."]) is None
    assert login_capabilities([b"[CAPABILITY IDLE MOVE] Logged in"]) is None
    assert login_capabilities([b"[CAPABILITY IMAP4rev1 IDLE] hi", b"Logged in"]) is None
    assert login_capabilities([]) is None


def _wired(state: str) -> tuple[_Protocol, list[bytes]]:
    """A protocol in ``state`` on a transport that keeps what is written to it (in a loop)."""
    sent: list[bytes] = []

    class Transport:
        def write(self, data: bytes) -> None:
            sent.append(data)
    protocol = _Protocol(asyncio.get_running_loop())
    protocol.transport = Transport()
    protocol.state = state
    return protocol, sent


def test_no_capabilities_are_asked_for_before_login() -> None:
    """aioimaplib asks CAPABILITY after every greeting; the gateway's client does not: it
    keeps those a greeting carried (Dovecot's) and asks for none when it carried none
    (Exchange's), since only those after login count (``imap_login`` asks for them)."""
    async def greet(line: bytes) -> tuple[list[bytes], set[str], str]:
        protocol, sent = _wired("CONNECTED")
        task = asyncio.ensure_future(protocol.welcome(line))
        await asyncio.sleep(0.01)
        if sent:    # asked (as aioimaplib does): answered, so that the test fails, not hangs
            tag = sent[0].split(b" ", 1)[0]
            protocol.data_received(b"* CAPABILITY IMAP4 IMAP4rev1 IDLE\r\n" + tag
                                   + b" OK CAPABILITY completed.\r\n")
        await asyncio.wait_for(task, 5)
        return sent, protocol.capabilities, protocol.state
    sent, caps, state = asyncio.run(greet(
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] Dovecot ready."))
    assert sent == [] and caps == {"IMAP4rev1", "SASL-IR", "AUTH=XOAUTH2"}
    assert state == "NONAUTH"
    sent, caps, state = asyncio.run(greet(
        b"* OK The Microsoft Exchange IMAP4 service is ready. [TABPADIA]"))
    assert sent == [] and caps == set() and state == "NONAUTH"
    sent, caps, state = asyncio.run(greet(b"* PREAUTH IMAP4rev1 server logged in as Alex"))
    assert sent == [] and caps == set() and state == "AUTH"


async def _batch(replies: Any) -> tuple[list[bytes], Any, _Protocol]:
    """``status_many`` of three mailboxes on a protocol whose server answers with
    ``replies(tags)``: what was written, the response, and the protocol afterwards."""
    protocol, sent = _wired("SELECTED")
    task = asyncio.ensure_future(protocol.status_many(['"INBOX"', '"Archive"', '"Gone"'],
                                                      "(MESSAGES UNSEEN)", timeout=5))
    await asyncio.sleep(0.01)
    tags = [line.split(b" ", 1)[0] for line in b"".join(sent).splitlines()]
    protocol.data_received(replies(tags))
    resp = await asyncio.wait_for(task, 5)
    return sent, resp, protocol


async def test_status_commands_are_written_at_once_and_answered_in_any_order() -> None:
    """Three STATUS commands in one write, each with its own tag; the server completes them
    last first (RFC 3501 5.5 lets it) and one folder is gone: the answer holds the two
    STATUS lines, says NO for the refused one, and leaves no command pending."""
    sent, resp, protocol = await _batch(lambda tags: (
        b'* STATUS "Archive" (MESSAGES 4 UNSEEN 1)\r\n' + tags[2]
        + b" NO Mailbox doesn't exist: Gone\r\n* STATUS INBOX (MESSAGES 9 UNSEEN 3)\r\n"
        + tags[0] + b" OK Status completed.\r\n" + tags[1] + b" OK Status completed.\r\n"))
    assert len(sent) == 1
    assert [line.split(b" ", 1)[1] for line in sent[0].splitlines()] == [
        b'STATUS "INBOX" (MESSAGES UNSEEN)', b'STATUS "Archive" (MESSAGES UNSEEN)',
        b'STATUS "Gone" (MESSAGES UNSEEN)']
    assert len({line.split(b" ", 1)[0] for line in sent[0].splitlines()}) == 3
    assert resp.result == "NO"
    assert {s.name: (s.messages, s.unseen) for s in parse_status(resp.lines)} == {
        "Archive": (4, 1), "INBOX": (9, 3)}
    assert protocol.pending_async_commands == {} and protocol.pending_sync_command is None


async def test_a_status_batch_all_answered_ok_is_ok() -> None:
    _, resp, protocol = await _batch(lambda tags: b"".join(
        b"* STATUS %s (MESSAGES %d UNSEEN 0)\r\n%s OK done\r\n" % (name, n, tag)
        for n, (name, tag) in enumerate(zip((b"INBOX", b"Archive", b"Gone"), tags,
                                            strict=True))))
    assert resp.result == "OK"
    assert [(s.name, s.messages) for s in parse_status(resp.lines)] == [
        ("INBOX", 0), ("Archive", 1), ("Gone", 2)]
    assert protocol.pending_async_commands == {}


async def test_a_throttled_status_batch_ends_bad_with_the_servers_words() -> None:
    """Exchange answers every command of a throttled login BAD (gateway.mail.imap): the
    batch's answer is BAD and carries the words ``ImapConn.call`` looks for."""
    _, resp, _ = await _batch(lambda tags: b"".join(
        tag + b" BAD User is authenticated but not connected.\r\n" for tag in tags))
    assert resp.result == "BAD"
    assert any(THROTTLED in line for line in resp.lines)


def test_status_arguments_with_line_breaks_are_refused() -> None:
    async def run() -> None:
        protocol = _Protocol(asyncio.get_running_loop())
        protocol.state = "AUTH"
        await protocol.status_many(['"a"\r\nA1 LOGOUT'], "(MESSAGES)")
    try:
        asyncio.run(run())
    except ValueError:
        pass
    else:
        raise AssertionError("a STATUS argument with CR LF was written")


# ---- the reader of received bytes (_Protocol._handle_responses) ------------------------------

# What a server may send while a command is pending: answers with literals (one holding a
# CRLF, one whose contents look like a literal's announcement, one empty, two in one
# answer), other untagged answers, a continuation, a line with a bare LF, a parenthesis in
# a string, an empty line. The chunks are cut anywhere, inside literals and CRLFs too.
WIRE = [b"* 1 FETCH (UID 5 BODY[1] {5}\r\nab\r\nc FLAGS (\\Seen))\r\n",
        b"* 2 EXISTS\r\n", b"* 3 FETCH (UID 7 BODY[] {0}\r\n)\r\n",
        b'* 4 FETCH (UID 8 ENVELOPE ("a (" NIL))\r\n', b"* 5 FETCH (UID 9 X {4}\r\n{2}\r\n)\r\n",
        b"+ go ahead\r\n", b"* OK [ALERT] mind\nthe gap\r\n", b"* 6 EXPUNGE\r\n",
        b"* 7 FETCH (UID 10 BODY[1] {3}\r\nxyz BODY[2] {2}\r\nuv)\r\n", b"\r\n"]


async def _read_with(protocol_class: Any, wire: bytes, cuts: list[int], idle: bool) -> Any:
    """Feed ``wire`` to a protocol of ``protocol_class`` with a FETCH pending (or an IDLE,
    whose lines are handed on in batches as each chunk ends), cut at ``cuts``: what the
    command got and what the protocol kept, or the exception the reader raised."""
    protocol = protocol_class(asyncio.get_running_loop())
    protocol.state = aioimaplib.SELECTED
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    if idle:
        cmd = aioimaplib.IdleCommand("A1", queue, timeout=None)
        protocol.pending_sync_command = cmd
    else:
        cmd = FetchCommand("A1", "1:*", "(UID)", timeout=None)
        protocol.pending_async_commands["FETCH"] = cmd
    try:
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            protocol.data_received(wire[start:end])
    except Exception as exc:   # compared below, not hidden
        return type(exc).__name__, str(exc)
    batches = []
    while not queue.empty():
        batches.append([bytes(line) for line in queue.get_nowait()])
    return (cmd._event.is_set(), cmd.response.result,
            [bytes(line) for line in cmd.response.lines], batches,
            type(protocol.current_command), protocol.incomplete_line)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WIRE), max_size=25), st.booleans(), st.booleans(),
       st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_the_reader_cuts_bytes_as_aioimaplibs_does(pieces: list[bytes], done: bool,
                                                    idle: bool, cuts: list[int]) -> None:
    """Any answer, cut into any chunks: the same lines and literals reach the same command,
    it completes (or not) alike, and what is left over waits alike."""
    wire = b"".join(pieces) + (b"A1 OK Fetch completed (0.001 secs).\r\n" if done else b"")
    at = sorted({c for c in cuts if 0 < c < len(wire)})

    async def run() -> None:
        ours = await _read_with(_Protocol, wire, at, idle)
        assert ours == await _read_with(aioimaplib.IMAP4ClientProtocol, wire, at, idle)
    asyncio.run(run())


async def test_an_answer_of_thousands_of_lines_in_one_chunk_is_read() -> None:
    """The folder list of a mailbox of 5,000 folders, received in one read (a busy loop and
    a full socket buffer give one). aioimaplib's reader raises RecursionError at about 990
    lines, inside the connection's reader, which ends the connection."""
    wire = b"".join(b'* LIST (\\HasNoChildren) "/" "Case %d"\r\n' % i for i in range(5000))
    wire += b"A1 OK List completed.\r\n"
    for protocol_class in (_Protocol, aioimaplib.IMAP4ClientProtocol):
        protocol = protocol_class(asyncio.get_running_loop())
        protocol.state = aioimaplib.SELECTED
        cmd = Command("LIST", "A1", '""', '"*"', timeout=None)
        protocol.pending_async_commands["LIST"] = cmd
        if protocol_class is _Protocol:
            protocol.data_received(wire)
            assert cmd.response.result == "OK"
            assert len(cmd.response.lines) == 5001
            assert cmd.response.lines[4999] == b'(\\HasNoChildren) "/" "Case 4999"'
        else:   # the reason for ours: aioimaplib's own cannot
            try:
                protocol.data_received(wire)
            except RecursionError:
                pass
            else:
                raise AssertionError("aioimaplib's reader read 5,000 lines at once")


# ---- SELECT and LIST written together (_Protocol.execute) -----------------------------------

def _select_answer(tag: bytes) -> list[bytes]:
    return [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n", b"* 7 EXISTS\r\n",
            b"* 0 RECENT\r\n", b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
            b"* OK [UIDNEXT 12] Predicted next UID\r\n",
            tag + b" OK [READ-WRITE] Select completed.\r\n"]


def _list_answer(tag: bytes) -> list[bytes]:
    # One name as a literal, as a server sends a name it will not quote (RFC 3501 4.3).
    return [b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
            b'* LIST (\\HasChildren) "/" {12}\r\nCommittees "\r\n',
            b'* LIST (\\HasNoChildren \\Sent) "/" "Sent Items"\r\n',
            tag + b" OK List completed.\r\n"]


def _tags(sent: list[bytes]) -> dict[bytes, bytes]:
    """The tag of each command written, by its verb."""
    found = {}
    for line in b"".join(sent).splitlines():
        tag, verb = line.split(b" ", 2)[:2]
        found[verb] = tag
    return found


def _answers(response: Any) -> tuple[str, list[bytes]]:
    return response.result, [bytes(line) for line in response.lines]


async def _one_after_the_other() -> tuple[tuple[str, list[bytes]], tuple[str, list[bytes]]]:
    """aioimaplib's own protocol: SELECT, its answer, then LIST, its answer."""
    protocol, sent = _wired(aioimaplib.AUTH)
    protocol.__class__ = aioimaplib.IMAP4ClientProtocol   # the stock one, same transport
    select = asyncio.ensure_future(protocol.select("INBOX"))
    await asyncio.sleep(0)
    protocol.data_received(b"".join(_select_answer(_tags(sent)[b"SELECT"])))
    selected = await asyncio.wait_for(select, 5)
    listing = asyncio.ensure_future(protocol.simple_command("LIST", '""', '"*"'))
    await asyncio.sleep(0)
    protocol.data_received(b"".join(_list_answer(_tags(sent)[b"LIST"])))
    return _answers(selected), _answers(await asyncio.wait_for(listing, 5))


async def _command(protocol: _Protocol, verb: str) -> Any:
    if verb == "SELECT":
        return await protocol.select("INBOX")
    return await protocol.simple_command(verb, *(('""', '"*"') if verb == "LIST" else ()))


ORDERS: dict[str, Callable[[list[bytes], list[bytes]], list[bytes]]] = {
    # Dovecot's way: each answer whole, in the order asked.
    "in turn": lambda s, li: s + li,
    # RFC 3501 5.5 lets a server run both at once: LIST lines among SELECT's, and LIST
    # ended before SELECT.
    "interleaved": lambda s, li: [s[0], li[0], s[1], li[1], s[2], s[3], li[2], s[4], s[5], li[3]],
    "list first": lambda s, li: li + s,
}


async def test_select_and_list_are_written_together_and_answered_apart() -> None:
    """A cold folder page asks SELECT and LIST at once, in either order of writing; however
    the server interleaves the answers, each command gets what aioimaplib gives it when the
    two are asked one after the other, and nothing is left pending."""
    expected = await _one_after_the_other()
    for list_first in (False, True):
        for name, order in ORDERS.items():
            protocol, sent = _wired(aioimaplib.AUTH)
            verbs = ["LIST", "SELECT"] if list_first else ["SELECT", "LIST"]
            tasks = [asyncio.ensure_future(_command(protocol, verb)) for verb in verbs]
            await asyncio.sleep(0.01)
            tags = _tags(sent)
            assert set(tags) == {b"SELECT", b"LIST"} and len(sent) == 2, (name, sent)
            for chunk in order(_select_answer(tags[b"SELECT"]), _list_answer(tags[b"LIST"])):
                protocol.data_received(chunk)
            done = [await asyncio.wait_for(t, 5) for t in tasks]
            if list_first:
                done.reverse()
            assert (_answers(done[0]), _answers(done[1])) == expected, (name, list_first)
            assert protocol.state == aioimaplib.SELECTED
            assert protocol.pending_sync_command is None and not protocol.pending_async_commands


async def test_other_commands_still_wait_for_a_pending_select() -> None:
    """Only LIST goes beside a SELECT: a NOOP (whose untagged answers could be the
    SELECT's) and a second SELECT wait for its answer, as in aioimaplib."""
    for second in ("NOOP", "SELECT"):
        protocol, sent = _wired(aioimaplib.AUTH)
        first = asyncio.ensure_future(protocol.select("INBOX"))
        await asyncio.sleep(0)
        other = asyncio.ensure_future(_command(protocol, second))
        await asyncio.sleep(0.01)
        assert len(sent) == 1, sent
        protocol.data_received(b"".join(_select_answer(_tags(sent)[b"SELECT"])))
        await asyncio.wait_for(first, 5)
        await asyncio.sleep(0.01)
        assert len(sent) == 2, sent
        other.cancel()
