"""The failover and notification settings: validation names the key."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings


@pytest.mark.parametrize("env,key", [
    ({"GATEWAY_FAILOVER_INITIAL_MODE": "drill"}, "failover.initial_mode"),
    ({"GATEWAY_FAILOVER_INITIAL_MODE": "on"}, "failover.initial_mode"),
    ({"GATEWAY_FAILOVER_REAUTH_MINUTES": "0"}, "failover.reauth_minutes"),
    ({"GATEWAY_NOTIFY_WEBHOOKS": "teams.example/hook"}, "notify.webhooks"),
    ({"GATEWAY_NOTIFY_EMAIL_TO": "ict@council.example"}, "notify.smtp_host"),
    ({"GATEWAY_NOTIFY_ATTEMPTS": "0"}, "notify.attempts"),
])
def test_bad_failover_settings_name_the_key(env: dict[str, str], key: str) -> None:
    """Each invalid failover or notify setting is refused with its key named."""
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert key in str(err.value)


def test_webhook_urls_are_redacted() -> None:
    """Webhook URLs carry their own secret, so check-config never prints them."""
    s = load_settings(environ={"GATEWAY_NOTIFY_WEBHOOKS": "https://hooks.example/T0/B0/xyz"})
    assert s.notify.webhooks == ["https://hooks.example/T0/B0/xyz"]
    assert "xyz" not in str(s.redacted())
