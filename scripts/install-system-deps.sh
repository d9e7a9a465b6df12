#!/usr/bin/env bash
# Installs the Debian packages the gateway's demo and tests need, only when missing, and
# stops the system services those packages start (the tests run private instances).
# Usage: scripts/install-system-deps.sh [demo|test]
# Idempotent: when everything is present it only asks dpkg and exits (well under a second).
set -euo pipefail

want=(
  dovecot-imapd dovecot-lmtpd   # IMAP server of the dev stack (a private instance per run)
)
if [ "${1:-demo}" = "test" ]; then
  want+=(
    # PostgreSQL: the tests start a private server on their own data directory and port
    # (tests/pgserver.py), as the unprivileged `postgres` user the package creates.
    postgresql
    chromium                      # headless Chromium through Playwright (tests/web)
    # WebKitGTK, iPad Safari's engine family (tests/web/webkit.py): the driver and
    # MiniBrowser; it has no headless mode, so a virtual X server; a private session bus
    # per browser so GTK does not autolaunch one (plus at-spi) that outlives it; software GL.
    webkit2gtk-driver xvfb xauth dbus-daemon libgl1-mesa-dri
    # The pages ask for system-ui/sans-serif: predictable fonts for layout and screenshots
    # (DejaVu is fontconfig's sans-serif; Liberation has Arial/Times/Courier metrics).
    fonts-dejavu-core fonts-liberation2
    openssl                       # certificates made by tests
    # The real tools the deploy kit targets (tests/deploy):
    nginx                         # `nginx -t` on deploy/nginx/*.conf with Debian's 1.22
    prometheus                    # `promtool check metrics` on a live /metrics
    monitoring-plugins-basic      # `check_http` on /health and /livez, as Nagios runs it
    systemd                       # `systemd-analyze verify` on deploy/systemd/gateway.service
  )
fi

# Services the packages above start on a systemd machine; the tests never use them.
services=(dovecot postgresql nginx prometheus)

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

# A system nginx would hold ports 80/443 and a system Prometheus port 9090 on a developer's
# machine for nothing: stop them and keep them from starting at boot.
for s in "${services[@]}"; do
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$s" ]; then
    $SUDO "/etc/init.d/$s" stop >/dev/null 2>&1 || true
    $SUDO update-rc.d "$s" disable >/dev/null 2>&1 || true
  fi
done
echo "Debian packages installed."
