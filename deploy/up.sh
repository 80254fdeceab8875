#!/usr/bin/env bash
# The whole system on this machine: prepare it, build, and run `touchpoint up`
# (a Tansu broker, the four services and the desk as separate processes). Ctrl-C
# stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
cargo build --release --bins
exec ./target/release/touchpoint up "$@"
