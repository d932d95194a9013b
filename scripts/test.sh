#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this).
#
# Installs what the tests need when it is missing (a .venv with libosdp, the
# interop peer; mosquitto and nats-server), then runs the harness self-check
# and every Rust test in the workspace: unit tests, simulated-bus tests, and
# the end-to-end tests against real libosdp devices on PTYs and real MQTT
# brokers. It also checks the systemd unit (systemd-analyze verify and
# the security exposure ceiling), and at the end builds and checks the
# arm64 and armhf packages (scripts/package.sh: cross builds, package
# fields and files, the packaged binary under qemu-user).
# HUB_TEST_PACKAGE=0 leaves the packages out (a quicker local run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "test: cargo not found. Install the Rust toolchain (https://rustup.rs), then run again." >&2
        exit 1
    fi
fi

scripts/test-env.sh
scripts/check-systemd.sh
.venv/bin/python tests/peers/selfcheck.py
cargo test --workspace --locked "$@"

if [ "${HUB_TEST_PACKAGE:-1}" != 0 ]; then
    scripts/package.sh
fi
