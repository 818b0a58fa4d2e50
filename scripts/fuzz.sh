#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes with libFuzzer on stable Rust:
# builds fuzz/ with our crates SanitizerCoverage-instrumented (the flags
# cargo-fuzz uses, minus the nightly-only address sanitizer; debug assertions
# and overflow checks on; see scripts/fuzz-rustc), then runs each target for
# SECONDS (default 20) from the seed corpus.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# A crash stops the script with the input saved under target/fuzz/artifacts/;
# copy it into fuzz/regressions/TARGET/ so `cargo test -p hallmark-fuzz`
# replays it from then on. On nightly,
# `cd fuzz && cargo fuzz run --features fuzz TARGET` works too (with ASan).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(csr evidence attestation_result ocsp_request config)
fi

out=target/fuzz
mkdir -p "$out"
# Only our crates are instrumented (scripts/fuzz-rustc), so this build reuses
# the dependencies of the release build and takes a minute, not six. The
# parsers we call (x509-parser, der, ciborium, toml) then give the fuzzer no
# coverage of their own; for a deep run that instruments everything, use
# cargo fuzz on nightly.
echo "== building fuzz targets (our crates coverage-instrumented)"
RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/fuzz-rustc" \
    cargo build --release --locked -p hallmark-fuzz --features fuzz --bins

for t in "${targets[@]}"; do
    corpus="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    echo "== fuzzing $t for ${seconds}s"
    if ! "target/release/$t" "$corpus" fuzz/corpus/"$t" \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$out/$t.log"; then
        tail -40 "$out/$t.log"
        echo "fuzz target $t crashed; the input is in $artifacts/." >&2
        echo "Copy it into fuzz/regressions/$t/ and fix the parser." >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$out/$t.log" | tr '\n' ' '
    echo
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each, no crash"
