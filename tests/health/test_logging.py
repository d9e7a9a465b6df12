"""Structured logs: JSON lines with a request id, and no token, cookie or message content in
them after a sign-in and page views (captured at debug level)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from email import message_from_bytes, policy

import pytest

from gateway.devstack.users import user
from gateway.logging import make_handler
from tests.conftest import Gateway, sign_in


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = make_handler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _bodies(gw: Gateway, who: str) -> list[str]:
    assert gw.stack.mail is not None
    found = []
    for path in sorted(gw.stack.mail.maildir(user(who).email).glob("cur/*"))[:40]:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        try:
            part = msg.get_body(("plain",)) if hasattr(msg, "get_body") else None
            text = part.get_content() if part is not None else ""
        except (LookupError, ValueError, KeyError, AttributeError):
            continue  # the seed's deliberately broken messages
        found += [line.strip() for line in text.splitlines() if len(line.strip()) >= 25][:2]
    return found


def test_logs_are_json_with_request_ids_and_hold_no_secrets(gateway: Gateway,
                                                            captured: io.StringIO):
    """After a sign-in and page views, every line is JSON with a request id, and no token,
    cookie value or sample message text appears anywhere in the logs."""
    client = sign_in(gateway, "member")
    ids = []
    for path in ("/", "/mail", "/health", "/livez", "/no-such-page"):
        r = client.get(path)
        ids.append(r.headers["x-request-id"])
    svc = gateway.app.state.services
    account = gateway.loop.run(svc.store.list_sessions())[0].account_id
    secrets = [
        gateway.loop.run(svc.entra.imap_token(account)),
        gateway.loop.run(svc.entra.graph_token(account)),
        *[c for c in client.cookies.values() if len(c) >= 16],
        gateway.settings.get("entra.client_secret"),
    ]
    bodies = _bodies(gateway, "member")
    assert secrets and bodies
    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all({"time", "level", "logger", "message", "request_id"} <= set(x)
                         for x in lines)
    access = [x for x in lines if x["logger"] == "gateway.access"]
    assert {x["request_id"] for x in access} >= set(ids)
    for secret in secrets:
        assert secret not in text
        assert secret[-24:] not in text
    for body in bodies:
        assert body not in text
