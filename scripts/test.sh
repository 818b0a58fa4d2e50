#!/usr/bin/env bash
# Runs every check and every test, exactly as CI does: formatting, clippy,
# then the whole workspace test suite (unit, interop with openssl/pkilint,
# end-to-end against the real binaries). One build profile: release.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
export PATH="$PWD/.venv/bin:$PATH"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
cargo build --release --workspace --bins --locked
cargo test --release --workspace --locked
# The README's run command itself, so it can never silently break.
cargo run --release --locked -p hallmark-provisioner -- demo --devices 5
