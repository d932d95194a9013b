#!/usr/bin/env bash
# Builds the Debian packages for Raspberry Pi-class boards: arm64
# (aarch64-unknown-linux-gnu) and armhf (armv7-unknown-linux-gnueabihf),
# with the systemd unit and a default config (docs/packaging.md).
#
# Installs what it needs when missing: the cross compilers (Debian's
# gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf), qemu-user, the rustup
# targets and cargo-deb. Then, for each target: builds, checks the binary's
# architecture and the package's fields and files, and runs the packaged
# binary under qemu-user (`--version`, and `check-config` on the packaged
# default config). Fails on the first check that does not hold; the test
# suite (scripts/test.sh) runs it.
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
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@"
}
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v arm-linux-gnueabihf-gcc >/dev/null || need+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
for t in "${targets[@]}"; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t" || {
        echo "package: rustup cannot add $t to $(rustc --version);" \
            "pick a toolchain that has it, e.g. RUSTUP_TOOLCHAIN=1.95.0 $0" >&2
        exit 1
    }
done
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

fail() { echo "package: $*" >&2; exit 1; }

for t in "${targets[@]}"; do
    echo "== $t"
    cargo build --locked --release -p hub --bin hub --target "$t"
    bin="target/$t/release/hub"
    case "$t" in
        aarch64-*) qemu=qemu-aarch64; sysroot=/usr/aarch64-linux-gnu; arch=arm64; elf="ARM aarch64" ;;
        armv7-*) qemu=qemu-arm; sysroot=/usr/arm-linux-gnueabihf; arch=armhf; elf="ARM," ;;
    esac
    if command -v file >/dev/null; then
        desc=$(file -b "$bin")
        echo "  $desc"
        case "$desc" in *"$elf"*) ;; *) fail "$bin is not an $arch executable" ;; esac
    fi
    deb=$(cargo deb --locked -p hub --target "$t" --no-build --strip 2>&1 | tail -n 1)
    [ -f "$deb" ] || fail "cargo deb did not make a package: $deb"
    echo "package: $deb"
    dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/  &/p'
    [ "$(dpkg-deb --field "$deb" Architecture)" = "$arch" ] || fail "$deb is not Architecture: $arch"
    [ "$(dpkg-deb --field "$deb" Package)" = "edge-hub" ] || fail "$deb is not the edge-hub package"
    contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
    echo "$contents" | sed 's/^/  /'
    for want in ./usr/bin/hub ./etc/hub/hub.toml ./usr/lib/sysusers.d/hub.conf \
        ./usr/lib/systemd/system/hub.service; do
        echo "$contents" | grep -qx "$want" || fail "$deb lacks $want"
    done
    # The packaged binary, under qemu-user: its version, and the packaged
    # default config passes its own check.
    if command -v "$qemu" >/dev/null; then
        root=$(mktemp -d)
        dpkg-deb -x "$deb" "$root"
        version=$(dpkg-deb --field "$deb" Version)
        version=${version%-*}
        got=$("$qemu" -L "$sysroot" "$root/usr/bin/hub" --version)
        echo "under $qemu: $got"
        [ "$got" = "hub $version" ] || fail "expected 'hub $version' under $qemu, got '$got'"
        "$qemu" -L "$sysroot" "$root/usr/bin/hub" check-config --config "$root/etc/hub/hub.toml" ||
            fail "the packaged config fails check-config under $qemu"
        rm -rf "$root"
    else
        echo "($qemu not available: binary not run)"
    fi
done
echo "package: ok (${targets[*]})"
