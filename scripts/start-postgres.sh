#!/usr/bin/env bash
# Starts a private PostgreSQL for trying several gateway instances by hand (and for bench/):
# its own data directory and port on loopback, run as the unprivileged `postgres` user when
# started as root. Prints the DSN to put in GATEWAY_STORE_POSTGRES_DSN; Ctrl-C stops it and
# removes its data. The tests start the same server themselves (tests/pgserver.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m tests.pgserver "$@"
