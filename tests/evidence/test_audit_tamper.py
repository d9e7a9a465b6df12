"""The audit chain with signed checkpoints, on SQLite and PostgreSQL: editing, deleting,
re-chaining (an edit with every later hash recomputed) and cutting the tail of the audit
table are each detected; so are forged and deleted checkpoints. The tampering is done as an
attacker would, with SQL on the real database."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.evidence.checkpoint import check_chain, take_checkpoint
from gateway.evidence.signing import Signer
from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from gateway.switch.audit import GENESIS, AuditLog, entry_hash

T0 = 1_774_656_000.0          # 2026-03-28 00:00 UTC


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        self.t += 60
        return self.t


async def _sql(store: Store, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run SQL on the store's database directly (``?`` placeholders; made $n for Postgres)."""
    if isinstance(store, SqliteStore):
        db = sqlite3.connect(store.path)
        with db:
            for sql, params in statements:
                db.execute(sql, params)
        db.close()
        return
    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store.dsn)
    try:
        for sql, params in statements:
            n = 0

            def dollar(_m: Any) -> str:
                nonlocal n
                n += 1
                return f"${n}"
            await conn.execute(re.sub(r"\?", dollar, sql), *params)
    finally:
        await conn.close()


async def _rows(store: Store) -> list[Any]:
    return await store.audit_rows()


@pytest.fixture
async def chained(store: Store, tmp_path: Path) -> tuple[Store, Signer, str, Clock]:
    clock = Clock()
    log = AuditLog(store, clock)
    for i in range(6):
        await log.record("failover.changed", f"cli:ict{i}", old="standby", new="active",
                         reason=f"r{i}")
    signer = Signer.from_file(tmp_path / "k.pem")
    file = str(tmp_path / "checkpoints.jsonl")
    assert await take_checkpoint(store, signer, clock, file) is not None
    for i in range(2):       # entries after the checkpoint
        await log.record("auth.signin", f"m{i}@council.example")
    return store, signer, file, clock


async def test_intact_chain_and_checkpoints_verify(
    chained: tuple[Store, Signer, str, Clock],
) -> None:
    store, signer, file, _ = chained
    check = await check_chain(store, signer, file)
    assert check.ok and check.entries == 8 and check.checkpoints == 1, check.problems


async def test_an_edited_entry_is_detected(chained: tuple[Store, Signer, str, Clock]) -> None:
    store, signer, file, _ = chained
    row = (await _rows(store))[2]
    body = json.loads(row.body)
    body["data"]["reason"] = "nothing happened"
    await _sql(store, [("UPDATE audit SET body = ? WHERE seq = ?",
                        (json.dumps(body), row.seq))])
    check = await check_chain(store, signer, file)
    assert not check.ok and "entry 3" in check.text()


async def test_a_deleted_entry_is_detected(chained: tuple[Store, Signer, str, Clock]) -> None:
    store, signer, file, _ = chained
    await _sql(store, [("DELETE FROM audit WHERE seq = ?", (4,))])
    check = await check_chain(store, signer, file)
    assert not check.ok and "entry 4 is missing" in check.text()


async def test_a_rechained_table_is_detected_by_the_checkpoint(
    chained: tuple[Store, Signer, str, Clock],
) -> None:
    """Edit entry 2 and recompute every later hash: the chain alone verifies again, the
    signed checkpoint does not agree."""
    store, signer, file, _ = chained
    rows = await _rows(store)
    prev, updates = GENESIS, []
    for r in rows:
        body = r.body
        if r.seq == 2:
            b = json.loads(body)
            b["actor"] = "cli:someone-else"
            body = json.dumps(b, sort_keys=True, separators=(",", ":"))
        h = entry_hash(r.seq, r.at, body, prev)
        updates.append(("UPDATE audit SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                        (body, prev, h, r.seq)))
        prev = h
    await _sql(store, updates)
    check = await check_chain(store, signer, file)
    assert not check.ok
    assert any("re-written" in p for p in check.problems), check.problems
    assert not any("missing" in p for p in check.problems)


async def test_a_cut_tail_is_detected(chained: tuple[Store, Signer, str, Clock]) -> None:
    """Removing the last entries leaves a valid shorter chain; the checkpoint counted more."""
    store, signer, file, _ = chained
    await _sql(store, [("DELETE FROM audit WHERE seq > ?", (3,))])
    check = await check_chain(store, signer, file)
    assert not check.ok and any("shortened" in p for p in check.problems), check.problems


async def test_deleting_the_checkpoint_too_is_caught_by_the_file(
    chained: tuple[Store, Signer, str, Clock],
) -> None:
    store, signer, file, _ = chained
    await _sql(store, [("DELETE FROM audit WHERE seq > ?", (3,)),
                       ("DELETE FROM audit_checkpoints WHERE seq > ?", (0,))])
    check = await check_chain(store, signer, file)
    assert not check.ok
    assert any("missing from the store" in p for p in check.problems)
    assert any("shortened" in p for p in check.problems)


async def test_a_forged_checkpoint_is_detected(chained: tuple[Store, Signer, str, Clock]) -> None:
    store, signer, file, _ = chained
    await _sql(store, [("UPDATE audit_checkpoints SET seq = ? WHERE seq > ?", (3, 0))])
    check = await check_chain(store, signer, file)
    assert not check.ok and any("bad signature" in p for p in check.problems)


async def test_no_checkpoint_is_taken_of_a_broken_chain(
    chained: tuple[Store, Signer, str, Clock],
) -> None:
    store, signer, file, clock = chained
    await _sql(store, [("DELETE FROM audit WHERE seq = ?", (2,))])
    clock.t += 86400
    assert await take_checkpoint(store, signer, clock, file) is None
    assert len(await store.checkpoints()) == 1
