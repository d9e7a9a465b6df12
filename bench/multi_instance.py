"""Several instances (issue 7): sign-ins per second and page views per second with one and
with two gateway processes sharing one PostgreSQL.

    .venv/bin/python bench/multi_instance.py [--seconds 10] [--clients 32]

PostgreSQL is a private server (tests/pgserver.py: its own data directory and port, fsync
off), the dev stack (Entra stand-in, Dovecot, SMTP) runs in this process's background loop,
each gateway is a separate ``python -m gateway serve`` process, and the load generator is
httpx (async, keep-alive over TLS, closed loop) in this process's main thread, so on a small
machine all of them share the same cores: read the figures as relative, one vs two.

- sign-ins/s: the whole flow per sign-in (``/auth/start`` -> stand-in ``dev_auto`` ->
  ``/auth/callback``): flow row written and taken, token cache written, session created,
  audit entry appended; clients are spread round-robin over the instances.
- page views/s: ``/mail/compose`` by signed-in members: session read and touched, switch
  read, CSRF token; no IMAP, so it measures the gateway and its store, not Dovecot.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (
    MEMBERS,
    GatewayProcess,
    async_client,
    bench,
    machine_line,
    sign_in_async,
)

from gateway.crypto import new_key
from tests.pgserver import shared_server

PAGE = "/mail/compose"


async def sign_ins(urls: list[str], b: object, seconds: float, concurrency: int) -> float:
    stack = b.stack  # type: ignore[attr-defined]
    ctx = b.ssl()  # type: ignore[attr-defined]
    done = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=60) as entra:
        async def worker(i: int) -> None:
            nonlocal done
            n = i
            while time.monotonic() < stop:
                async with async_client(urls[n % len(urls)], ctx) as c:
                    await sign_in_async(c, entra, stack, MEMBERS[n % len(MEMBERS)])
                done += 1
                n += concurrency
        start = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return done / (time.monotonic() - start)


async def page_views(urls: list[str], b: object, seconds: float, clients: int) -> float:
    stack = b.stack  # type: ignore[attr-defined]
    ctx = b.ssl()  # type: ignore[attr-defined]
    members: list[httpx.AsyncClient] = []
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=60) as entra:
        for i in range(clients):
            c = async_client(urls[i % len(urls)], ctx)
            await sign_in_async(c, entra, stack, MEMBERS[i % len(MEMBERS)])
            members.append(c)
    done = 0
    errors = 0
    stop = time.monotonic() + seconds

    async def worker(c: httpx.AsyncClient) -> None:
        nonlocal done, errors
        while time.monotonic() < stop:
            r = await c.get(PAGE)
            if r.status_code == 200:
                done += 1
            else:
                errors += 1
    start = time.monotonic()
    await asyncio.gather(*(worker(c) for c in members))
    rate = done / (time.monotonic() - start)
    for c in members:
        await c.aclose()
    if errors:
        print(f"  ({errors} page views did not answer 200)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--signin-concurrency", type=int, default=8)
    args = ap.parse_args()
    pg = shared_server()
    if pg is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql).")
    print(f"# multi-instance benchmark: {machine_line()}")
    print(f"# {args.seconds:g} s per figure; {args.clients} page-view clients; "
          f"{args.signin_concurrency} concurrent sign-ins; PostgreSQL {pg.bindir.parent.name}")
    results: dict[int, tuple[float, float]] = {}
    with bench(seed_messages=5) as b:
        for n in (1, 2):
            dsn = pg.new_database("bench")
            key = new_key()
            procs = [GatewayProcess(b.stack, b.workdir, store__backend="postgres",
                                    store__postgres_dsn=dsn, crypto__keys=[key],
                                    store__postgres_pool_size=20)
                     for _ in range(n)]
            try:
                urls = [p.url for p in procs]
                s = asyncio.run(sign_ins(urls, b, args.seconds, args.signin_concurrency))
                v = asyncio.run(page_views(urls, b, args.seconds, args.clients))
                results[n] = (s, v)
                print(f"{n} instance{'s' if n > 1 else ' '}: {s:8.1f} sign-ins/s   "
                      f"{v:8.1f} page views/s", flush=True)
            finally:
                for p in procs:
                    p.stop()
                pg.drop_database(dsn)
    (s1, v1), (s2, v2) = results[1], results[2]
    print(f"two vs one: sign-ins x{s2 / s1:.2f}, page views x{v2 / v1:.2f}")


if __name__ == "__main__":
    main()
