"""``gateway serve`` freezes what start-up built (gateway.app.create_app's ``freeze_heap``):
once the app is up, the collector no longer walks the modules, templates and services at
every full collection; at stop it lets them go again. Apps built for tests do not."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from gateway import app as app_module
from gateway import logging as gateway_logging
from gateway.app import create_app
from gateway.devstack.procs import free_port
from gateway.devstack.runner import TLSServer
from gateway.devstack.stack import DevStack
from gateway.server import limits
from tests.conftest import Gateway, LoopThread


def test_a_served_app_freezes_its_start_up_heap_and_lets_go_at_stop(
        stack: DevStack, loop_thread: LoopThread, tmp_path: Path) -> None:
    port = free_port()
    app = create_app(stack.gateway_settings(port, store__sqlite_path=str(tmp_path / "g.db")),
                     freeze_heap=True)
    server = TLSServer(app, stack.certs, port=port)
    before = gc.get_freeze_count()
    loop_thread.run(server.start())
    try:
        up = gc.get_freeze_count()
    finally:
        loop_thread.run(server.stop())
    assert before == 0
    assert up > 10_000      # the process's modules and start-up objects, not a handful
    assert gc.get_freeze_count() == 0


def test_an_app_built_without_it_leaves_the_collector_alone(gateway: Gateway) -> None:
    gateway.running()      # its lifespan is up (raises if not)
    assert gc.get_freeze_count() == 0


def test_the_worker_processes_app_is_built_to_freeze(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``server.workers`` > 1: each worker's app (``from_environment``) asks for it too."""
    asked: list[Any] = []
    built = object()

    def fake_create_app(settings: Any, **kw: Any) -> Any:
        asked.append(kw)
        return built
    monkeypatch.setenv("GATEWAY_STORE_SQLITE_PATH", str(tmp_path / "g.db"))
    # Its logging and connection limits are process-wide: left as the suite set them.
    monkeypatch.setattr(gateway_logging, "setup_logging", lambda level: None)
    monkeypatch.setattr(limits, "configure", lambda settings: None)
    monkeypatch.setattr(app_module, "create_app", fake_create_app)
    assert app_module.from_environment() is built
    assert asked == [{"freeze_heap": True}]
