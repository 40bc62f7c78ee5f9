#!/usr/bin/env bash
# Starts snapconfd (SQLite, default durability) on a free loopback port with a
# fresh data dir, then measures durable Put throughput with 1, 16 and 256
# concurrent writers and Get/List throughput with 64 in flight.
#   bench/server-throughput.sh [--short] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=10s keys=10000
if [ "${1:-}" = "--short" ]; then duration=1s keys=500; shift; fi
build=${1:-build}
dir=$(mktemp -d)
trap 'kill $(cat "$dir/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
"$build/service/snapconfd" --listen=127.0.0.1:0 --data-dir="$dir/data" \
  --ready-file="$dir/ready" 2>"$dir/log" &
echo $! >"$dir/pid"
for _ in $(seq 100); do [ -s "$dir/ready" ] && break; sleep 0.1; done
addr=$(cat "$dir/ready")
load="$build/bench/load/snapconf_load --target=$addr --duration=$duration"
# Pin the server and the load generator to different cores where possible.
pin_load=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  taskset -pc 0 "$(cat "$dir/pid")" >/dev/null
  pin_load="taskset -c 1"
fi
echo "# snapconfd at $addr, $(nproc) cores, duration $duration per run"
for w in 1 16 256; do $pin_load $load --workload=put --inflight=$w --keys=$keys; done
$pin_load $load --workload=get --inflight=64 --keys=$keys
$pin_load $load --workload=list --inflight=64 --keys=$keys --preload=false --list_page=100
