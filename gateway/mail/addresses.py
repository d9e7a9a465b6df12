"""The one reader of address lists: RFC 5322 ``address-list`` (mailboxes and groups), for
headers of received mail and for the To/Cc/Bcc text a member types or gets in a reply.

Rule: only the address list's own structure makes an address. Text inside a display name
(a quoted string, a comment, an encoded word) is name text and never creates, splits or
hides a recipient, whatever it decodes to. Python 3.11.7's ``email.utils.getaddresses``
predates the CVE-2023-27043 fix (python/cpython#102988, "Reject malformed addresses in
email.parseaddr()"): ``alice@x.example <bob@y.example>`` or
``alice@x.example(<bob@y.example>`` gives an address the sender did not write, and a list
whose display names carry commas inside quotes is regrouped by ``realname_comma_re``. An
element that is not a well-formed mailbox comes back as ``Unreadable`` holding its text, so
the member is shown it plainly instead of a guess.

Encoded words (RFC 2047) are decoded only after the structure is read, and only inside
display names (``decode_rfc2047``); an encoded ``Bcc:`` or line break is then name text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.mail.headers import ENCODED_WORD, Address, clean_text, decode_rfc2047, unsurrogate

MAX_LIST_CHARS = 65_536   # a council-wide To: line is large but not this large
MAX_ITEMS = 1_000         # mailboxes read from one list
MAX_SHOWN = 80            # what an unreadable element shows of itself

# RFC 5322 3.2.3 specials, and atext as the set that is neither special, space nor control.
_SPECIALS = '()<>[]:;@\\,."'
_ATOM = re.compile(r"[^\s()<>\[\]:;@\\,.\"\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An element of the list that is not a well-formed mailbox: its text, cleaned."""
    text: str


@dataclass(slots=True)
class AddressList:
    addresses: list[Address] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    truncated: bool = False   # more than MAX_ITEMS or MAX_LIST_CHARS: the rest not read


class _Token:
    __slots__ = ("kind", "raw", "text")

    def __init__(self, kind: str, text: str, raw: str) -> None:
        self.kind = kind   # "atom", "quoted", "comment", "literal", "special", "space"
        self.text = text   # the value: quotes and escapes taken off
        self.raw = raw     # as written, for showing an unreadable element

    def __repr__(self) -> str:
        return f"{self.kind}:{self.text!r}"


class _Unterminated(ValueError):
    pass


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            j = i
            while j < n and text[j] in " \t\r\n":
                j += 1
            out.append(_Token("space", " ", text[i:j]))
            i = j
        elif ch == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise _Unterminated(text[i:])
            out.append(_Token("quoted", "".join(buf), text[i:j + 1]))
            i = j + 1
        elif ch == "(":
            j, depth, buf = i + 1, 1, []
            while j < n and depth:
                c = text[j]
                if c == "\\" and j + 1 < n:
                    j += 1
                    c = text[j]
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if not depth:
                        break
                buf.append(c)
                j += 1
            if depth:
                raise _Unterminated(text[i:])
            out.append(_Token("comment", "".join(buf), text[i:j + 1]))
            i = j + 1
        elif ch == "[":
            j = text.find("]", i)
            if j < 0:
                raise _Unterminated(text[i:])
            out.append(_Token("literal", text[i:j + 1], text[i:j + 1]))
            i = j + 1
        elif ch in _SPECIALS or ch in "\x00\x7f" or ch < " ":
            out.append(_Token("special", ch, ch))
            i += 1
        elif ch == "=" and (word := ENCODED_WORD.match(text, i)):
            # One token whatever its text holds ("=?utf-8?q?x=0D=0ABcc:_e@x?=" has a ":"
            # and an "@"): it is a word of a name, never structure.
            out.append(_Token("atom", word.group(), word.group()))
            i = word.end()
        else:
            match = _ATOM.match(text, i)
            assert match is not None   # ch is atext here
            out.append(_Token("atom", match.group(), match.group()))
            i = match.end()
    return out


def _shown(tokens: Sequence[_Token]) -> str:
    text = clean_text("".join(t.raw for t in tokens))
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def _elements(tokens: list[_Token]) -> list[list[_Token]]:
    """Split at top-level commas, a group's colon and its closing semicolon. A semicolon
    outside a group also ends an element: members type "a@x; b@y" as Outlook shows lists.
    Inside <...> nothing splits (the element is then checked as a whole)."""
    elements: list[list[_Token]] = []
    current: list[_Token] = []
    angle = group = False
    for tok in tokens:
        if tok.kind == "special":
            if tok.text == "<":
                angle = True
            elif tok.text == ">":
                angle = False
            elif not angle and tok.text == ",":
                elements.append(current)
                current = []
                continue
            elif not angle and tok.text == ";":
                elements.append(current)
                current, group = [], False
                continue
            elif not angle and tok.text == ":" and not group and "<" not in (
                    t.text for t in current if t.kind == "special"):
                # "Team: a@x, b@y;" -- the group's name is a phrase and names nobody.
                if _phrase(current) is None:
                    elements.append([*current, tok])   # not a phrase: shown as unreadable
                current, group = [], True
                continue
        current.append(tok)
    elements.append(current)
    return elements


def _phrase(tokens: Sequence[_Token]) -> str | None:
    """A display name (RFC 5322 phrase, with obs-phrase's dots) decoded, or None if the
    tokens are not one. Only atoms, quoted strings, dots, comments and spaces qualify."""
    words: list[str] = []
    for tok in tokens:
        if tok.kind in ("atom", "quoted"):
            words.append(tok.text)
        elif tok.kind == "special" and tok.text == ".":
            words.append(".")
        elif tok.kind not in ("space", "comment"):
            return None
    # Decoded last, and as name text only: whatever an encoded word holds stays in the name.
    return decode_rfc2047(" ".join(words))


def _addr_spec(tokens: Sequence[_Token]) -> str | None:
    """local-part "@" domain, or None. Spaces and comments between parts are allowed
    (CFWS); the local part is a dot-atom or a quoted string, the domain a dot-atom."""
    parts = [t for t in tokens if t.kind not in ("space", "comment")]
    ats = [i for i, t in enumerate(parts) if t.kind == "special" and t.text == "@"]
    if len(ats) != 1:
        return None   # "a@malicious.example@good.example" (CVE-2019-16056) names nobody
    local, domain = parts[:ats[0]], parts[ats[0] + 1:]
    local_text: str | None
    if len(local) == 1 and local[0].kind == "quoted":
        if not local[0].text or any(c < " " or c == "\x7f" for c in local[0].text):
            return None
        local_text = local[0].raw
    else:
        local_text = _dotted(local)
    # Syntax only: whether the domain can be sent to is validate_email's question at Send.
    domain_text = _dotted(domain)
    if local_text is None or domain_text is None:
        return None
    return f"{local_text}@{domain_text}"


def _dotted(tokens: Sequence[_Token]) -> str | None:
    # atom ("." atom)*: alternate strictly, starting and ending with a word.
    if not tokens or len(tokens) % 2 == 0:
        return None
    for i, tok in enumerate(tokens):
        if i % 2 == 0 and not (tok.kind == "atom" and _ATOM.fullmatch(tok.text)):
            return None
        if i % 2 == 1 and not (tok.kind == "special" and tok.text == "."):
            return None
    return "".join(t.text for t in tokens)


def _mailbox(tokens: list[_Token]) -> Address | Unreadable | None:
    significant = [t for t in tokens if t.kind != "space"]
    if not significant:
        return None   # an empty element: "a@x,,b@y" or "undisclosed-recipients:;"
    if all(t.kind == "comment" for t in significant):
        return None
    opens = [i for i, t in enumerate(tokens) if t.kind == "special" and t.text == "<"]
    closes = [i for i, t in enumerate(tokens) if t.kind == "special" and t.text == ">"]
    if opens or closes:
        # name-addr: [phrase] "<" addr-spec ">" [CFWS]. Exactly one pair, in order, and
        # nothing but spaces or comments after it; the phrase holds no "@" or "<".
        if len(opens) != 1 or len(closes) != 1 or closes[0] < opens[0]:
            return Unreadable(_shown(tokens))
        after = tokens[closes[0] + 1:]
        name = _phrase(tokens[:opens[0]])
        addr = _addr_spec(tokens[opens[0] + 1:closes[0]])
        if name is None or addr is None or any(t.kind not in ("space", "comment")
                                               for t in after):
            return Unreadable(_shown(tokens))
        return Address(name[:200], addr)
    addr = _addr_spec(tokens)
    if addr is None:
        return Unreadable(_shown(tokens))
    # "jo@x.example (Jo Evans)": the old way of naming, a comment after the address.
    comments = [t.text for t in tokens if t.kind == "comment"]
    name = decode_rfc2047(" ".join(comments)) if comments else ""
    return Address(name[:200], addr)


def parse_address_list(value: str | None) -> AddressList:
    """Read an address list. Never raises; never makes an address out of name text."""
    result = AddressList()
    if not value:
        return result
    if len(value) > MAX_LIST_CHARS:
        value, result.truncated = value[:MAX_LIST_CHARS], True
    if not value.isascii():
        # compat32 keeps raw 8-bit octets as surrogates: read them as UTF-8 (or Latin-1).
        value = unsurrogate(value)
    try:
        tokens = _tokens(value)
    except _Unterminated as exc:
        # An unclosed quote or comment swallows the rest: what came before still counts,
        # the rest is shown as it is.
        start = len(value) - len(str(exc))
        tokens = _tokens_or_empty(value[:start])
        tail = Unreadable(clean_text(str(exc))[:MAX_SHOWN])
        parsed = _read(tokens, result)
        parsed.unreadable.append(tail)
        return parsed
    return _read(tokens, result)


def _tokens_or_empty(text: str) -> list[_Token]:
    try:
        return _tokens(text)
    except _Unterminated:
        return []


def _read(tokens: list[_Token], result: AddressList) -> AddressList:
    for element in _elements(tokens):
        item = _mailbox(element)
        if item is None:
            continue
        if len(result.addresses) + len(result.unreadable) >= MAX_ITEMS:
            result.truncated = True
            break
        if isinstance(item, Address):
            result.addresses.append(item)
        else:
            result.unreadable.append(item)
    return result


# Words of atext only, one space apart, and nothing an encoded word could be read from.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def parse_addresses(value: str | None) -> list[Address]:
    """The well-formed mailboxes of a list (what ``parse_address_list`` finds)."""
    return parse_address_list(value).addresses


def format_address(address: Address) -> str:
    """One mailbox as it is written in a To: field, the name quoted whenever it holds
    anything but plain words, so reading it back gives exactly this address and name."""
    name = clean_text(address.name)
    if not name:
        return address.email
    if not _PLAIN_NAME.fullmatch(name) or "=?" in name:
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address.email}>"


def format_address_list(addresses: Iterable[Address]) -> str:
    return ", ".join(format_address(a) for a in addresses)
