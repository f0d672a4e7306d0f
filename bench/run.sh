#!/usr/bin/env bash
# The benchmark: builds the release binary and the bench program (examples/bench.rs), installs
# SeaweedFS, generates the dataset into a temporary directory and measures slotfill against it.
#
#   bench/run.sh --profile smoke            # a few days, small objects; checks request counts
#   bench/run.sh --profile full             # the figures of docs/BENCHMARKS.md (about 30 min)
#   bench/run.sh --profile full --only scan,fill --json results.jsonl --perf perf-dir
#
# Exits non-zero when a check of the request counts fails. BENCH_TMP picks the parent directory
# of the generated data (default: $TMPDIR or /tmp); it is deleted at the end.
# The line-counting micro-benchmark is separate: cargo bench --bench count
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo build --release --locked --bin slotfill
cargo build --release --locked --example bench
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
parent=${BENCH_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$parent"
work=$(mktemp -d "$parent/slotfill-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "data in $work; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/{print $2}') GB RAM"
TMPDIR="$work" "$target_dir/release/examples/bench" --slotfill "$target_dir/release/slotfill" "$@"
