"""The strict address-list reader (gateway.mail.addresses): only the list's structure makes
an address; names never do; what is not a mailbox is kept as text to show."""

from __future__ import annotations

import pytest

from gateway.mail.addresses import (
    MAX_ITEMS,
    format_address,
    format_address_list,
    parse_address_list,
)
from gateway.mail.headers import Address

EVIL = "evil@evil.example"


@pytest.mark.parametrize(("text", "addresses", "unreadable"), [
    # python/cpython#102988: getaddresses in 3.11.7 reads these as addresses not written.
    (f"alice@x.example <{EVIL}>", [], [f"alice@x.example <{EVIL}>"]),
    (f"alice@x.example(<{EVIL}>", [Address("", "alice@x.example")], [f"(<{EVIL}>"]),
    (f"alice@x.example@<{EVIL}>", [], [f"alice@x.example@<{EVIL}>"]),
    # CVE-2019-16056: two at signs.
    ("a@malicious.example@good.example", [], ["a@malicious.example@good.example"]),
    # Quoted names with commas stay one mailbox each (realname_comma_re regrouped them).
    ('"Doe, Jane" <jane@x.example>, "Doe, John" <john@x.example>',
     [Address("Doe, Jane", "jane@x.example"), Address("Doe, John", "john@x.example")], []),
    # Encoded words are name text whatever they decode to, ":" and "@" included.
    ("=?utf-8?q?Alice=0D=0ABcc:_evil@evil.example?= <alice@x.example>",
     [Address("Alice Bcc: evil@evil.example", "alice@x.example")], []),
    ("=?utf-8?b?QWxpY2UsIGV2aWxAZXZpbC5leGFtcGxlIDw+?= <alice@x.example>",
     [Address("Alice, evil@evil.example <>", "alice@x.example")], []),
    ("=?utf-8?q?Jo?= =?utf-8?q?_Evans?= <jo@x.example>", [Address("Jo Evans", "jo@x.example")], []),
    # An encoded word is never part of an address.
    ("=?x?q?a@b?=@c.example", [], ["=?x?q?a@b?=@c.example"]),
    # Text after the closing ">" (a folded Bcc) makes the element unreadable, not two.
    (f"Mallory <m@x.example>\r\n Bcc: {EVIL}", [], [f"Mallory <m@x.example> Bcc: {EVIL}"]),
    # Groups name nobody; their members count.
    ("Team: a@x.example, b@y.example;, c@z.example",
     [Address("", "a@x.example"), Address("", "b@y.example"), Address("", "c@z.example")], []),
    ("undisclosed-recipients:;", [], []),
    ("jo@x.example (Jo Evans)", [Address("Jo Evans", "jo@x.example")], []),
    ('"Q \\"x\\"" <q@x.example>', [Address('Q "x"', "q@x.example")], []),
    ("<b@x.example>; <a@x.example>", [Address("", "b@x.example"), Address("", "a@x.example")], []),
    ('"unclosed <a@x.example>, b@y.example', [], ['"unclosed <a@x.example>, b@y.example']),
    ("a@x.example, (unclosed b@y.example", [Address("", "a@x.example")], ["(unclosed b@y.example"]),
    ("<a@x.example", [], ["<a@x.example"]),
    ("a b@x.example", [], ["a b@x.example"]),
    ("", [], []),
])
def test_reads_only_what_the_structure_says(text: str, addresses: list[Address],
                                            unreadable: list[str]) -> None:
    found = parse_address_list(text)
    assert found.addresses == addresses
    assert [u.text for u in found.unreadable] == unreadable


@pytest.mark.parametrize("address", [
    Address("Alice Bcc: evil@evil.example", "alice@x.example"),
    Address("Doe, Jane", "jane@x.example"),
    Address('Q "x" \\ y', "q@x.example"),
    Address("Jo Evans", "jo@x.example"),
    Address("", "jo@x.example"),
    Address("a <b@c.example>", "d@e.example"),
])
def test_formatting_reads_back_exactly(address: Address) -> None:
    assert parse_address_list(format_address(address)).addresses == [address]
    two = format_address_list([address, Address("Sam", "sam@x.example")])
    assert parse_address_list(two).addresses == [address, Address("Sam", "sam@x.example")]


def test_plain_names_are_not_quoted() -> None:
    assert format_address(Address("Jo Evans", "jo@x.example")) == "Jo Evans <jo@x.example>"
    assert format_address(Address("Evans, Jo", "jo@x.example")) == '"Evans, Jo" <jo@x.example>'


def test_bounded() -> None:
    found = parse_address_list(", ".join(f"u{i}@x.example" for i in range(MAX_ITEMS + 5)))
    assert len(found.addresses) == MAX_ITEMS and found.truncated
    assert parse_address_list("(" * 100_000).unreadable   # unclosed: shown, not recursed
