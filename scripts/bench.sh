#!/bin/sh
# Runs the browse benchmark (docs/benchmarks.md): builds it in release at low priority, then runs it at normal
# priority so the build does not slow the figures. `--quick` is the CI-sized run (64 MiB file, 1,000 items, 0 ms).
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--quick" ]; then
    GALLERYFS_BENCH_QUICK=1
    export GALLERYFS_BENCH_QUICK
fi
nice -n 10 cargo bench --bench browse --no-run
exec cargo bench --bench browse
