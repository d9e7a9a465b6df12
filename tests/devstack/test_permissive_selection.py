"""`make test`'s second pass (`--mail-mode=permissive`) keeps every test whose mail server
follows the mode and deselects the others (tests/conftest.py, MODE_FIXTURES). Checked by
collecting real test modules in a child pytest, so a renamed fixture that silently empties the
second pass fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _collected(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
         *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_permissive_pass_keeps_mail_tests_and_drops_the_rest() -> None:
    modules = ["tests/web/test_mail.py", "tests/faults/test_sending.py", "tests/mail/test_utf7.py"]
    everything = set(_collected(*modules))
    permissive = set(_collected("--mail-mode=permissive", *modules))
    assert permissive < everything
    # Tests on the dev stack (the gateway fixture, through stack) run again ...
    assert "tests/web/test_mail.py::test_folder_list_shows_exchange_folders_and_hides_non_mail" \
        in permissive
    # ... and so does every test on the fault stack (fault_stack) ...
    sending = {t for t in everything if t.startswith("tests/faults/test_sending.py")}
    assert sending and sending <= permissive
    # ... while tests that meet no server (the attachment-kind names, the UTF-7 codec) do not.
    assert "tests/web/test_mail.py::test_attachment_kinds_are_named_as_members_know_them" \
        in everything - permissive
    assert any(t.startswith("tests/mail/test_utf7.py") for t in everything)
    assert not any(t.startswith("tests/mail/test_utf7.py") for t in permissive)
