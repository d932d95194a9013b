#!/usr/bin/env bash
# Runs every cargo-fuzz target of the osdp crate for N seconds each, one at a
# time, and prints executions, coverage and findings per target.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none; if the AddressSanitizer build
#                   fails the script falls back to none by itself.
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=2048".
#
# Only the stable toolchain is needed: cargo-fuzz passes nightly-only rustc
# flags (-Zsanitizer, -Cpasses=sancov-module), which RUSTC_BOOTSTRAP=1 lets
# a stable rustc accept.
#
# Corpora grow in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>),
# crashes land in fuzz/artifacts/<target>/, logs in fuzz/artifacts/logs/;
# all three are git-ignored. libFuzzer stops a target at its first crash;
# the script reports it and goes on with the next target.
set -euo pipefail

secs="${1:-60}"
shift || true
all_targets=(frame_decoder payload_parse secure_channel control_panel peripheral card_decode)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
echo "== $(cargo fuzz --version), $(rustc --version)"

sanitizer="${FUZZ_SANITIZER:-address}"
echo "== building targets (sanitizer: $sanitizer)"
if ! cargo fuzz build --sanitizer "$sanitizer" >/dev/null 2>"$root/fuzz/.build.log"; then
    if [ "$sanitizer" != none ]; then
        echo "   $sanitizer build failed (see fuzz/.build.log); falling back to --sanitizer none"
        sanitizer=none
        cargo fuzz build --sanitizer none
    else
        cat "$root/fuzz/.build.log" >&2
        exit 1
    fi
fi
rm -f "$root/fuzz/.build.log"

logs="$root/fuzz/artifacts/logs"
mkdir -p "$logs"
summary=()
total_findings=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="$logs/$t.log"
    stamp="$(mktemp)"
    echo "== $t: ${secs}s (log: ${log#"$root"/})"
    start=$(date +%s)
    set +e
    # shellcheck disable=SC2086
    cargo fuzz run --sanitizer "$sanitizer" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -a '^stat::number_of_executed_units' "$log" | tail -1 | awk '{print $2}')
    rate=$(grep -a '^stat::average_exec_per_sec' "$log" | tail -1 | awk '{print $2}')
    last=$(grep -a -E '^#[0-9]+' "$log" | grep -a 'cov:' | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    files=$(find "fuzz/corpus/$t" -type f | wc -l)
    new_findings=$(find "fuzz/artifacts/$t" -type f -newer "$stamp" \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort)
    rm -f "$stamp"
    n_find=$(grep -c . <<<"$new_findings" || true)
    total_findings=$((total_findings + n_find))
    if [ "$rc" -ne 0 ] && [ "$n_find" -eq 0 ]; then
        echo "   libFuzzer exited $rc without an artifact; tail of the log:"
        tail -20 "$log"
        n_find="error($rc)"
    fi
    echo "   executions=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} (${files} files) findings=${n_find}"
    if [ -n "$new_findings" ]; then
        grep -a -m1 -A1 'panicked at' "$log" | sed 's/^/   /' || true
        sed 's/^/   artifact: /' <<<"$new_findings"
    fi
    summary+=("| $t | ${elapsed}s | ${execs:-?} | ${rate:-?} | ${files} (${corp:-?}) | ${cov:-?} | ${ft:-?} | ${n_find} |")
done

echo
echo "sanitizer: $sanitizer; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "| target | duration | executions | exec/s | corpus files (libFuzzer corp) | cov | ft | findings |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
[ "$total_findings" -eq 0 ]
