#!/usr/bin/env bash
# Prepare the machine for the integration tests (idempotent).
#
#   * .venv at the repo root with libosdp==3.2.9 (the OSDP interop peer)
#   * mosquitto (MQTT broker) and nats-server (second MQTT implementation, for
#     the broker contract tests) via apt-get when missing
#   * chromium (headless, for the web page test tests/tests/web_page.rs, driven
#     by scripts/web_page_check.py with the Python standard library) via
#     apt-get when missing
#
# Quick and offline when everything is already in place. Exports nothing:
# tests find .venv/bin/python relative to the repo root (HUB_TEST_PYTHON
# overrides). Works as root or through sudo on Debian/Ubuntu.
set -euo pipefail

LIBOSDP_VERSION="3.2.9"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf 'test-env: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    fi
fi

# ---- Python interpreter -----------------------------------------------------
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
    done
fi

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get not available; please install: $*" >&2
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt_updated=1
    fi
    say "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"
}

if [ -z "$PY" ]; then
    apt_install python3 python3-venv python3-pip
    PY=python3
fi

# ---- .venv with libosdp -------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" - "$LIBOSDP_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("libosdp") == sys.argv[1]
import osdp  # noqa: F401  (the C extension loads)
PYEOF
}

if venv_ok; then
    say "libosdp==$LIBOSDP_VERSION already in $VENV (nothing to do)"
else
    if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        say "removing broken $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$PY" -m venv "$VENV" 2>/dev/null; then
            # Debian/Ubuntu split ensurepip into pythonX.Y-venv
            rm -rf "$VENV"
            pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            apt_install "python${pyver}-venv" || apt_install python3-venv
            "$PY" -m venv "$VENV"
        fi
        say "created $VENV ($("$VENV/bin/python" --version 2>&1))"
    fi
    say "pip install libosdp==$LIBOSDP_VERSION"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "libosdp==$LIBOSDP_VERSION"; then
        # No wheel for this platform: building the sdist needs a C toolchain.
        apt_install build-essential python3-dev
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q "libosdp==$LIBOSDP_VERSION"
    fi
    venv_ok || { say "libosdp did not install correctly" >&2; exit 1; }
    say "installed libosdp==$LIBOSDP_VERSION into $VENV"
fi

# ---- MQTT brokers: mosquitto, nats-server ------------------------------------------
# Both packages put the binary in /usr/sbin, which is not on a normal user's PATH.
have_bin() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
for pkg in mosquitto nats-server; do
    if have_bin "$pkg"; then
        say "$pkg present ($(command -v "$pkg" || echo "/usr/sbin/$pkg"); nothing to do)"
    else
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
    say "installed ${missing[*]}"
fi

# ---- Headless browser for the web page test ---------------------------------------
if [ -x /usr/bin/chromium ] || [ -n "${HUB_CHROMIUM:-}" ]; then
    say "chromium present (nothing to do)"
else
    apt_install chromium
    say "installed chromium"
fi

say "done"
