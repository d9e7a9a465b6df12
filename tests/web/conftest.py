"""Fixtures for the page tests: one Chromium per module (tests/web/browser.py) and WebKitGTK
sessions (tests/web/webkit.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.web.browser import IpadBrowser, ipad_browser
from tests.web.webkit import WebKitSession, webkit_sessions


@pytest.fixture
def webkit_factory() -> Iterator[Callable[..., WebKitSession]]:
    """``webkit_factory(**options)`` starts a WebKitSession; all are stopped after the test."""
    with webkit_sessions() as make:
        yield make


@pytest.fixture
def webkit(webkit_factory: Callable[..., WebKitSession]) -> WebKitSession:
    """A started WebKit session at iPad size with iPadOS Safari's default UA, own cookies."""
    return webkit_factory()


@pytest.fixture(scope="module")
def chromium() -> Iterator[IpadBrowser]:
    """One headless Chromium for a test module; each test opens its own page in it."""
    with ipad_browser() as b:
        yield b
