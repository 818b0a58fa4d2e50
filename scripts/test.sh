#!/usr/bin/env bash
# Runs every check and every test, exactly as CI does: formatting, clippy,
# the whole workspace test suite (unit, interop with openssl, pkilint,
# mosquitto and grpcio, end-to-end against the real binaries), a short
# fuzzing run of every parser of untrusted bytes, and the README's run
# command. One build profile: release.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase reports when it started, so a slow CI says where its time went.
start=$SECONDS
phase() { echo "== [$((SECONDS - start)) s] $*"; }
phase install test tools
bash scripts/install-test-deps.sh
export PATH="$PWD/.venv/bin:$PATH"
phase fmt
cargo fmt --all --check
phase clippy
cargo clippy --release --workspace --all-targets --all-features --locked -- -D warnings
phase build
cargo build --release --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
phase test
cargo test --release --workspace --locked 2>&1 | tee "$log"
# A short run of every fuzz target (coverage-guided libFuzzer; fails on a crash).
phase fuzz
bash scripts/fuzz.sh "${HALLMARK_FUZZ_SECONDS:-15}"
# The README's run command itself, so it can never silently break.
phase demo
cargo run --release --locked -p hallmark-provisioner -- demo --devices 5
# One closing line for the whole suite.
passed=$(grep -oE '^test result: [a-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
phase done
echo "tests: ${passed} passed, ${failed} failed"
