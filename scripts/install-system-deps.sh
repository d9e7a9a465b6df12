#!/usr/bin/env bash
# Installs the Debian packages the gateway's demo and tests need, only when missing.
# Usage: scripts/install-system-deps.sh [demo|test]
set -euo pipefail
want=(dovecot-imapd dovecot-lmtpd)
if [ "${1:-demo}" = "test" ]; then
  # PostgreSQL: the tests start a private server on their own data directory and port
  # (tests/pgserver.py), as the unprivileged `postgres` user the package creates.
  want+=(chromium postgresql)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "Installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The packages start a system Dovecot and PostgreSQL; the gateway's tests run their own
# private instances instead.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now dovecot >/dev/null 2>&1 || true
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
