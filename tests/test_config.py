"""Settings: TOML + environment, validation messages that name the key, redaction, docs."""

import re
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config import FIELDS, ConfigError, load_settings
from gateway.crypto import new_key

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_defaults_load_without_file_or_environment() -> None:
    """An empty environment yields the documented defaults."""
    s = load_settings(environ={})
    assert s.server.port == 8443
    assert s.store.backend == "sqlite"
    assert not s.production


def test_toml_then_environment_precedence(tmp_path: Path) -> None:
    """The environment overrides the TOML file, which overrides defaults."""
    f = tmp_path / "g.toml"
    f.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[session]\nidle_minutes = 5\n')
    s = load_settings(f, environ={"GATEWAY_SERVER_PORT": "9443"})
    assert s.server.port == 9443
    assert s.server.host == "0.0.0.0"
    assert s.session.idle_minutes == 5


def test_secret_from_file(tmp_path: Path) -> None:
    """A secret may come from a file, in TOML (`_file`) or the environment (`_FILE`)."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    s = load_settings(environ={"GATEWAY_ENTRA_CLIENT_SECRET_FILE": str(secret)})
    assert s.entra.client_secret == "s3cr3t-value"
    f = tmp_path / "g.toml"
    f.write_text(f'[entra]\nclient_secret_file = "{secret}"\n')
    assert load_settings(f, environ={}).entra.client_secret == "s3cr3t-value"


@pytest.mark.parametrize("env,key", [
    ({"GATEWAY_SERVER_PORT": "eighty"}, "server.port"),
    ({"GATEWAY_SERVER_PORT": "70000"}, "server.port"),
    ({"GATEWAY_SERVER_PUBLIC_URL": "http://x"}, "server.public_url"),
    ({"GATEWAY_ENTRA_AUTHORITY": "http://login.example"}, "entra.authority"),
    ({"GATEWAY_CRYPTO_KEYS": "bm90LWEta2V5"}, "crypto.keys"),
    ({"GATEWAY_STORE_BACKEND": "mysql"}, "store.backend"),
    ({"GATEWAY_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,not-an-ip"}, "server.trusted_proxies"),
    ({"GATEWAY_GENERAL_ENVIRONMENT": "production"}, "entra.authority"),
    ({"GATEWAY_GENERAL_TIMEZONE": "Mars/Olympus"}, "general.timezone"),
    ({"GATEWAY_SERVER_TLS_CERT": "/x.pem"}, "server.tls_key"),
])
def test_errors_name_the_key(env: dict[str, str], key: str) -> None:
    """Every validation error names the offending key."""
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert key in str(err.value)


def test_unknown_toml_key_and_section_are_named(tmp_path: Path) -> None:
    """A misspelt key or section in the file is refused, by name."""
    f = tmp_path / "g.toml"
    f.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings(f, environ={})
    f.write_text("[sever]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"\[sever\]"):
        load_settings(f, environ={})


def test_every_setting_is_documented() -> None:
    """docs/configuration.md describes every setting and its environment variable."""
    text = DOCS.read_text()
    missing = [f.key for f in FIELDS if f"`{f.key}`" not in text or f.env not in text]
    assert not missing, f"undocumented settings: {missing}"


def test_docs_name_no_setting_that_does_not_exist() -> None:
    """The reference documents no stale setting."""
    known = {f.key for f in FIELDS}
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", DOCS.read_text(), re.M))
    assert documented and documented <= known, documented - known


def test_check_config_redacts_secrets(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """check-config prints the effective settings without any secret value."""
    key = new_key()
    monkeypatch.setenv("GATEWAY_ENTRA_CLIENT_SECRET", "very-secret-client-value")
    monkeypatch.setenv("GATEWAY_CRYPTO_KEYS", key)
    monkeypatch.setenv("GATEWAY_ENTRA_AUTHORITY", "https://login.example/tenant")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "very-secret-client-value" not in out and key not in out
    assert "<redacted>" in out


def test_check_config_exits_1_naming_the_key(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad setting makes check-config exit 1 with the key in the message."""
    monkeypatch.setenv("GATEWAY_SESSION_IDLE_MINUTES", "soon")
    assert main(["check-config"]) == 1
    assert "session.idle_minutes" in capsys.readouterr().err


def test_settings_written_as_toml_read_back_the_same(tmp_path: Path) -> None:
    """to_toml writes every setting so that load_settings reads back the same values."""
    s = load_settings(environ={"GATEWAY_ACCESS_MEMBER_GROUPS": "g1,g2",
                               "GATEWAY_ENTRA_CLIENT_SECRET": 'quote" and \\ backslash',
                               "GATEWAY_SERVER_PORT": "9443"})
    f = tmp_path / "out.toml"
    f.write_text(s.to_toml())
    assert load_settings(f, environ={}).values == s.values


def test_typed_sections_carry_every_setting_with_its_type() -> None:
    s = load_settings(environ={"GATEWAY_IMAP_PORT": "1993", "GATEWAY_NOTIFY_EMAIL_TO": "a@x,b@x",
                               "GATEWAY_NOTIFY_SMTP_HOST": "relay"})
    assert s.imap.port == 1993 and isinstance(s.imap.port, int)
    assert s.notify.email_to == ["a@x", "b@x"]
    py = {"str": str, "int": int, "float": float, "bool": bool, "list": list}
    for f in FIELDS:
        value = getattr(getattr(s, f.section), f.name)
        assert isinstance(value, py[f.kind]), f.key
        assert value == s.value(f.key)


def test_a_section_class_that_drifts_from_the_table_is_refused() -> None:
    from dataclasses import make_dataclass

    from gateway.config import sections
    drifted = dict(sections.SECTIONS, imap=make_dataclass("ImapSettings", [
        ("host", "str"), ("port", "str"), ("ca_file", "str"), ("timeout_seconds", "float")]))
    with pytest.raises(TypeError, match="imap"):
        sections.check_sections(drifted)
    without = {k: v for k, v in sections.SECTIONS.items() if k != "mail"}
    with pytest.raises(TypeError, match="mail"):
        sections.check_sections(without)
    sections.check_sections()


def test_value_refuses_an_unknown_key() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={}).value("imap.hots")
