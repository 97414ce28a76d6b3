#!/bin/sh
# Runs the POSIX suites against a galleryfs mount: all of pjdfstest (with the expected failures the contract
# explains, README.md) and fsx with a close/reopen-heavy profile (both driven by tests/suite/edits_mount.rs, which
# mounts the gallery over a mock OneDrive with the outbox replaying in the background). Without the tools those
# tests say SKIPPED (and fail under GALLERYFS_REQUIRE_ALL=1, which scripts/test sets).
#
#   tests/pjdfstest/run.sh            run them (tools must be installed)
#   tests/pjdfstest/run.sh --install  install pjdfstest, fsx and the `tests` user first (a few minutes)
set -eu
cd "$(dirname "$0")/../.."
if [ "${1:-}" = "--install" ]; then
    apt-get install -y libacl1-dev acl
    cargo install pjdfstest --version 0.2.2 --locked
    cargo install fsx --locked
    getent passwd tests >/dev/null || echo 'tests:x:::Dummy User for pjdfstest:/:/usr/sbin/nologin' | newusers
fi
export PATH="$HOME/.cargo/bin:$PATH"
exec cargo test --test suite edits_mount::posix_ -- --nocapture --test-threads 1
