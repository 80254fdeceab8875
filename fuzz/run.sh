#!/usr/bin/env bash
# Fuzzes every target (or those named) for SECONDS each, starting from the
# seed corpus in fuzz/corpus/<target>. New inputs go to fuzz/target/corpus/,
# so the committed seeds stay as they are; a crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run.
#
#   fuzz/run.sh 20                  # the short run the test suite makes
#   fuzz/run.sh 3600 webhooks       # a long run of one target
#
# cargo-fuzz wants a nightly compiler for its instrumentation flags; this
# machine has only stable, so RUSTC_BOOTSTRAP=1 unlocks them (fuzz builds only).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(envelope program webhooks screening)
fi
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing (deploy/setup.sh installs it)"; exit 2; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for target in "${targets[@]}"; do
    mkdir -p "target/corpus/$target"
    echo "fuzz: $target for ${seconds}s"
    log="target/$target.log"
    if ! cargo fuzz run -O "$target" "target/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        grep -E -A12 "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -40
        echo "fuzz: $target broke; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    grep -E "^(Done|stat::number_of_executed_units|stat::new_units_added)" "$log"
done
echo "fuzz: no target panicked"
