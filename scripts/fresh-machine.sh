#!/usr/bin/env bash
# Checks the README's two commands on a fresh Debian 12 (bookworm) machine:
# a root made by debootstrap with only the base system, the packages a
# developer's machine has before it meets this project (git, curl,
# ca-certificates, systemd, and build-essential, the C compiler rustup asks
# for), and the Rust toolchain installed by rustup-init as the README says.
#
# It clones this repository's HEAD into that root, then, inside it:
#   1. `cargo run --release -p hub -- demo`: waits for the web page, logs in
#      with the printed password, presents Ann's card through the page and
#      looks for the granted event; then stops the demo.
#   2. `scripts/test.sh`: the whole suite, with every install it makes on a
#      machine that lacks things (venv with libosdp, mosquitto, nats-server,
#      chromium, cross compilers, qemu-user, cargo-deb).
#
#   sudo scripts/fresh-machine.sh [ROOT_DIR]     # default /var/tmp/hub-fresh
#
# Needs root (debootstrap, chroot, mounts) and the network (Debian's mirror,
# crates.io, PyPI, static.rust-lang.org). It is not part of the test suite:
# it takes as long as a first build plus the suite. The log says what ran.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${1:-/var/tmp/hub-fresh}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
toolchain="${RUST_TOOLCHAIN:-stable}"

say() { printf 'fresh-machine: %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { say "run as root (debootstrap and chroot)"; exit 2; }

if [ ! -x "$root/usr/bin/apt-get" ]; then
    command -v debootstrap >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap
    say "debootstrap bookworm into $root"
    debootstrap --variant=minbase \
        --include=ca-certificates,git,curl,build-essential,systemd,procps,file \
        bookworm "$root" "$mirror"
fi

mounted=()
bind() {
    mkdir -p "$root$2"
    mount "$@" && mounted=("$root$2" "${mounted[@]}")
}
cleanup() {
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
mount_at() { # mount_at TYPE TARGET
    mkdir -p "$root$2"
    mount -t "$1" "$1" "$root$2" && mounted=("$root$2" "${mounted[@]}")
}
mount_at proc /proc
mount_at sysfs /sys
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount --bind /dev "$root/dev" && mounted=("$root/dev" "${mounted[@]}")
mount --bind /dev/pts "$root/dev/pts" && mounted=("$root/dev/pts" "${mounted[@]}")
mount_at tmpfs /dev/shm
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The host's own CA certificates (an egress proxy's, say) are the network's,
# not the project's: trust them inside as the host does.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
fi
# A root made earlier (or by hand) gets the same starting packages.
chroot "$root" apt-get update -qq
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    ca-certificates git curl build-essential systemd procps file >/dev/null

# A second run reuses the clone (and its build): it moves it to HEAD.
if [ -d "$root/root/hub/.git" ]; then
    git -C "$root/root/hub" fetch -q "$repo" HEAD
    git -C "$root/root/hub" reset -q --hard FETCH_HEAD
    git -C "$root/root/hub" clean -qfdx -e target -e .venv
else
    git clone -q "$repo" "$root/root/hub"
fi
say "checked out $(git -C "$repo" rev-parse --short HEAD) in $root/root/hub"

cat >"$root/root/fresh-run.sh" <<EOF
#!/bin/bash
set -euo pipefail
export HOME=/root
if [ ! -x "\$HOME/.cargo/bin/cargo" ]; then
    # rustup-init itself (what https://sh.rustup.rs fetches and runs).
    curl --proto '=https' --tlsv1.2 -sSf -o /tmp/rustup-init \
        "https://static.rust-lang.org/rustup/dist/\$(uname -m)-unknown-linux-gnu/rustup-init"
    chmod +x /tmp/rustup-init
    /tmp/rustup-init -y --profile minimal --default-toolchain "$toolchain"
fi
. "\$HOME/.cargo/env"
cd /root/hub
echo "== 1. cargo run --release -p hub -- demo"
cargo run --release -p hub -- demo --card-every 0 >/tmp/demo.out 2>/tmp/demo.err &
demo=\$!
trap 'kill \$demo 2>/dev/null || true' EXIT
for _ in \$(seq 1 1800); do
    grep -q '"password"' /tmp/demo.out 2>/dev/null && break
    kill -0 \$demo 2>/dev/null || { cat /tmp/demo.err; exit 1; }
    sleep 1
done
head -n 1 /tmp/demo.out
# Only what a fresh machine has (curl); python3 may not be there yet.
base=\$(sed -n 's/.*"web":"\\(http[^"]*\\)\\/".*/\\1/p' /tmp/demo.out | head -n 1)
password=\$(sed -n 's/.*"password":"\\([^"]*\\)".*/\\1/p' /tmp/demo.out | head -n 1)
curl -sf -c /tmp/demo.cookies -o /dev/null -d user=demo --data-urlencode "password=\$password" "\$base/login"
curl -sf -b /tmp/demo.cookies -H 'Content-Type: application/json' \\
    -d '{"reader":"front-in","card":"12:34567"}' "\$base/api/v1/actions/present"
echo
granted=""
for _ in \$(seq 1 50); do
    granted=\$(curl -sf -b /tmp/demo.cookies "\$base/api/v1/status" | grep -o '"kind":"granted"[^}]*' | head -n 1) && break
    sleep 0.2
done
[ -n "\$granted" ] || { echo "demo: no granted event on the page"; exit 1; }
echo "demo: the card was granted; the page shows {\$granted}"
kill -INT \$demo; wait \$demo || true
echo "== 2. scripts/test.sh"
scripts/test.sh
echo "== both README commands passed"
EOF
chmod +x "$root/root/fresh-run.sh"
say "running the README's commands inside $root"
# A clean environment, but for the host's CA bundle settings (pip and
# requests read their own bundle unless told).
pass=()
for v in SSL_CERT_FILE SSL_CERT_DIR PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE GIT_SSL_CAINFO; do
    [ -z "${!v:-}" ] || pass+=("$v=${!v}")
done
chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb "${pass[@]}" /root/fresh-run.sh
