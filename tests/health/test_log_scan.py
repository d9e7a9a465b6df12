"""The log scan the run ends with (tests/conftest.py ``_scan_the_run_log_at_the_end``): it
finds each kind of leak, and a sign-in, read and send of its own leaves nothing in the logs."""

from __future__ import annotations

from tests.conftest import LOGGED_NEVER, Gateway, RunLog, log_leaks, sign_in


def test_the_scan_finds_each_kind_of_leak() -> None:
    jwt = "eyJhbGciOi.eyJzdWIiOi." + "s" * 43
    assert log_leaks("all quiet", ["rt-secret-0123456789"], [jwt]) == []
    found = log_leaks(f"x rt-secret-0123456789 {jwt[-43:]} {LOGGED_NEVER[0]} "
                      "__Host-gw_session=abc", ["rt-secret-0123456789"], [jwt])
    assert len(found) == 4
    assert not any("rt-secret-0123456789" in f for f in found), "the report repeats a secret"


def test_a_sign_in_read_and_send_leave_no_secret_in_the_logs(gateway: Gateway,
                                                             run_log: RunLog) -> None:
    from tests.web.test_mail import compose_form
    stack = gateway.stack
    before = len(stack.entra.handed_out)
    client = sign_in(gateway, "member")
    assert len(stack.entra.handed_out) > before, "the sign-in redeemed a code the scan knows"
    assert client.get("/mail").status_code == 200
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to="jo.evans@council.example", subject="Log scan", do="send",
                  body="Do not lose me")
    assert client.post(action, data=fields, headers={"Origin": gateway.url}).status_code == 303
    text = run_log.text()
    assert "signed in" in text, "the run log should hold the gateway's sign-in line"
    secrets = [*stack.signer.issued, *stack.entra.handed_out]
    assert log_leaks(text, secrets, list(stack.signer.issued)) == []
