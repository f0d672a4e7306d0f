#!/usr/bin/env bash
# The test command from the README: installs the test S3 server, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
# Library, binary and integration tests. The benchmark example and the criterion bench
# hold no tests; clippy --all-targets in .ci/run keeps them compiling.
cargo test --locked --lib --bins --tests "$@"
