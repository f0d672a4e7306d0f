#!/usr/bin/env bash
# The test command from the README: installs the test S3 server, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --locked --all-targets "$@"
