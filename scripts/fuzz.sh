#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes with libFuzzer on stable Rust:
# builds fuzz/ with SanitizerCoverage (the flags cargo-fuzz uses, minus the
# nightly-only address sanitizer; debug assertions and overflow checks on),
# then runs each target for SECONDS (default 20) from the seed corpus.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# A crash stops the script with the input saved under target/fuzz/artifacts/;
# copy it into fuzz/regressions/TARGET/ so `cargo test -p hallmark-fuzz`
# replays it from then on. On nightly, `cd fuzz && cargo fuzz run TARGET`
# works too (with ASan).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(csr evidence attestation_result ocsp_request config)
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
out=target/fuzz
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
# A separate build (other RUSTFLAGS): opt-level 1 halves its compile time
# and still runs hundreds of thousands of inputs a second; line tables are
# enough for crash backtraces.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    CARGO_PROFILE_RELEASE_INCREMENTAL=false
echo "== building fuzz targets (coverage-instrumented, $host)"
# --target keeps the instrumentation out of build scripts and proc macros.
cargo build --release --locked -p hallmark-fuzz --bins --target "$host" --target-dir "$out"

for t in "${targets[@]}"; do
    corpus="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    echo "== fuzzing $t for ${seconds}s"
    if ! "$out/$host/release/$t" "$corpus" fuzz/corpus/"$t" \
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
