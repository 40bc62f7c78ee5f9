#!/usr/bin/env bash
# Durable Put throughput (1 and 256 writers, 5 s each) of a fresh snapconfd
# with the extra flags given, e.g. none (audit log in the data dir) or
# --audit-log=/dev/null (events encoded and written, but to no file): the
# difference is what appending to the audit file costs the write path.
#   bench/audit/audit-write-cost.sh [BUILD_DIR] [snapconfd flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build
if [ $# -gt 0 ] && [ -d "$1" ]; then build=$1; shift; fi
dir=$(mktemp -d)
trap 'kill $(cat "$dir/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
"$build/service/snapconfd" --listen=127.0.0.1:0 --data-dir="$dir/data" --ready-file="$dir/ready" "$@" 2>"$dir/log" &
echo $! >"$dir/pid"
for _ in $(seq 100); do [ -s "$dir/ready" ] && break; sleep 0.1; done
addr=$(cat "$dir/ready")
command -v taskset >/dev/null && taskset -pc 0 "$(cat "$dir/pid")" >/dev/null
for w in 1 256; do taskset -c 1 $build/bench/load/snapconf_load --target=$addr --duration=5s --workload=put --inflight=$w --keys=10000; done
ls -la "$dir/data" | grep audit || true
