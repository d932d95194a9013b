#!/usr/bin/env bash
# Builds the Debian packages for Raspberry Pi-class boards: arm64
# (aarch64-unknown-linux-gnu) and armhf (armv7-unknown-linux-gnueabihf),
# with the systemd unit and a default config (docs/packaging.md).
#
# Installs what it needs when missing: the cross compilers (Debian's
# gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf), qemu-user, the rustup
# targets and cargo-deb. Then, for each target: builds, checks the binary's
# architecture, runs `hub --version` under qemu-user, and lists the package.
#
#   scripts/package.sh            # both targets
#   scripts/package.sh aarch64    # one (aarch64 or armv7)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

targets=()
for want in "${@:-aarch64 armv7}"; do
    for t in $want; do
        case "$t" in
            aarch64) targets+=(aarch64-unknown-linux-gnu) ;;
            armv7 | armhf) targets+=(armv7-unknown-linux-gnueabihf) ;;
            *) echo "package: unknown target '$t' (aarch64 or armv7)" >&2; exit 2 ;;
        esac
    done
done

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v arm-linux-gnueabihf-gcc >/dev/null || need+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
for t in "${targets[@]}"; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

for t in "${targets[@]}"; do
    echo "== $t"
    cargo build --locked --release -p hub --bin hub --target "$t"
    bin="target/$t/release/hub"
    file "$bin" 2>/dev/null || true
    case "$t" in
        aarch64-*) qemu=qemu-aarch64; sysroot=/usr/aarch64-linux-gnu ;;
        armv7-*) qemu=qemu-arm; sysroot=/usr/arm-linux-gnueabihf ;;
    esac
    if command -v "$qemu" >/dev/null; then
        echo "under $qemu: $("$qemu" -L "$sysroot" "$bin" --version)"
    else
        echo "($qemu not available: binary not run)"
    fi
    deb=$(cargo deb --locked -p hub --target "$t" --no-build --strip 2>&1 | tail -n 1)
    echo "package: $deb"
    dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/  &/p'
    dpkg-deb --contents "$deb" | awk '{print "  " $1, $6}'
done
