#!/usr/bin/env bash
# Starts a 3-member etcd cluster (Debian's etcd 3.4) and two snapconfd replicas
# with --store=etcd on free loopback ports, then measures Put throughput with
# 1, 16 and 256 concurrent writers through one replica and Get throughput with
# 64 in flight on each replica (the load tool of bench/load).
#   bench/etcd-throughput.sh [--short] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=5s keys=2000
if [ "${1:-}" = "--short" ]; then duration=1s keys=200; shift; fi
build=${1:-build}
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cluster="" endpoints=""
declare -a cports pports
for i in 0 1 2; do
  cports[$i]=$(port) pports[$i]=$(port)
  cluster+="${cluster:+,}m$i=http://127.0.0.1:${pports[$i]}"
  endpoints+="${endpoints:+,}127.0.0.1:${cports[$i]}"
done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$dir/m$i" \
    --listen-client-urls "http://127.0.0.1:${cports[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${cports[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${pports[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${pports[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --max-txn-ops 1024 --logger zap --log-level error 2>"$dir/m$i.log" &
  pids+=($!)
done
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
addrs=()
for r in 0 1; do
  "$build/service/snapconfd" --listen=127.0.0.1:0 --store=etcd --etcd-endpoints="$endpoints" \
    --ready-file="$dir/ready$r" 2>"$dir/snapconfd$r.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$dir/ready$r" ] && break; sleep 0.1; done
  addrs+=("$(cat "$dir/ready$r")")
done
load="$build/bench/load/snapconf_load --duration=$duration"
echo "# etcd 3-member cluster + 2 snapconfd replicas (--store=etcd), $(nproc) cores, $duration per run"
for w in 1 16 256; do $load --target="${addrs[0]}" --workload=put --inflight=$w --keys=$keys; done
for r in 0 1; do $load --target="${addrs[$r]}" --workload=get --inflight=64 --keys=$keys; done
