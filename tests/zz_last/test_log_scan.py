"""Runs last: the logs of the whole test run hold no token, refresh token, authorization
code, session cookie or message body that the run produced."""

from __future__ import annotations

from tests.conftest import RunLog

# Bodies that the seeder and the mail tests put in mailboxes and sent.
BODIES = ("New funding for community halls opens next week", "Precious words",
          "Do not lose me", "Meeting at 10?", "Sent without JavaScript.", "Try again")


def test_no_secret_or_mail_content_in_the_logs_of_the_whole_run(gateway, run_log: RunLog):
    """Scan every log line of the run for the stand-in's tokens and codes and for bodies
    (after one more sign-in, read and send of its own, so the scan never looks at nothing)."""
    from tests.conftest import sign_in
    from tests.web.test_mail import compose_form
    stack = gateway.stack
    client = sign_in(gateway, "member")
    assert client.get("/mail").status_code == 200
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to="jo.evans@council.example", subject="Log scan", do="send",
                  body="Do not lose me")
    assert client.post(action, data=fields, headers={"Origin": gateway.url}).status_code == 303
    text = run_log.text()
    assert "signed in" in text, "the run should have logged sign-ins"
    entra = stack.entra
    secrets = list(stack.signer.issued)
    secrets += list(entra._refresh) + list(entra._codes)
    assert secrets, "the run should have issued tokens"
    leaked = [s[:12] + "…" for s in secrets if s and s in text]
    assert leaked == []
    for jwt_part in {t.split(".")[2][:40] for t in stack.signer.issued if t.count(".") == 2}:
        assert jwt_part not in text
    assert [b for b in BODIES if b in text] == []
    assert "__Host-gw_session=" not in text
