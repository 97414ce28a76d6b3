#!/bin/sh
# The reliability suite (docs/reliability.md) in one command. Runs every tests/suite/reliability_*.rs module plus the
# older tests that belong to the suite (emulator faults, hostile input, store/delta property tests, the mount's
# kill -9 tests), in the long configuration: a few hundred files under faults (GALLERYFS_RELIABILITY_LONG=1) and a
# one-hour soak (GALLERYFS_SOAK_SECS, default 3600). Output of each part goes to target/reliability/<part>.txt and
# the RESULT lines (faults injected, secrets searched, soak figures) are gathered in
# target/reliability/summary.txt; the soak's memory/fd curve is in target/reliability/soak.csv.
#
#   scripts/reliability.sh            the documented long run (about 1 h 15 min)
#   scripts/reliability.sh --quick    the CI sizes (a few minutes)
#   GALLERYFS_SOAK_SECS=1200 scripts/reliability.sh   a 20-minute soak
set -eu
cd "$(dirname "$0")/.."
out=target/reliability
mkdir -p "$out"
if [ "${1:-}" = "--quick" ]; then
    unset GALLERYFS_RELIABILITY_LONG
    GALLERYFS_SOAK_SECS=${GALLERYFS_SOAK_SECS:-75}
else
    GALLERYFS_RELIABILITY_LONG=1
    export GALLERYFS_RELIABILITY_LONG
    GALLERYFS_SOAK_SECS=${GALLERYFS_SOAK_SECS:-3600}
fi
export GALLERYFS_SOAK_SECS

parts=""
for f in tests/suite/reliability_*.rs tests/suite/emulator_faults.rs tests/suite/hostile_input.rs tests/suite/store_delta.rs; do
    [ -f "$f" ] && parts="$parts $(basename "$f" .rs)"
done
# Build first, at low priority, so the timings of the runs are not skewed by the compiler.
nice -n 10 cargo test --locked --test suite --no-run

status=0
: > "$out/summary.txt"
run() {
    name=$1
    shift
    echo "== $name" | tee -a "$out/summary.txt"
    start=$(date +%s)
    if cargo test --locked "$@" -- --nocapture --test-threads=1 > "$out/$name.txt" 2>&1; then
        verdict=ok
    else
        verdict=FAILED
        status=1
    fi
    grep -E 'RESULT|SKIPPED|NOTE|test result:' "$out/$name.txt" | tee -a "$out/summary.txt" || true
    echo "$name: $verdict in $(( $(date +%s) - start )) s (log: $out/$name.txt)" | tee -a "$out/summary.txt"
}
for p in $parts; do
    run "$p" --test suite "$p::"
done
# The kill -9 tests of the mount (crash while journalled and during an upload).
run edits_mount_kill9 --test suite edits_mount::kill_9
exit $status
