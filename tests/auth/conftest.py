"""Fixtures of the sign-in and token tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.devstack.entra import EntraStandIn
from tests.conftest import Gateway


@pytest.fixture
def short_tokens(gateway: Gateway) -> Iterator[EntraStandIn]:
    """The Entra stand-in issuing access tokens that msal treats as expired (under 5 min
    left), so every page must refresh; the lifetime is restored afterwards."""
    entra = gateway.stack.entra
    assert entra is not None
    old = entra.access_token_lifetime
    entra.access_token_lifetime = 60
    yield entra
    entra.access_token_lifetime = old
