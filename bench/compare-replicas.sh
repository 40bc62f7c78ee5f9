#!/usr/bin/env bash
# Two snapconfd replicas on a 3-member etcd cluster, side by side with that
# etcd cluster itself.
#
# Starts three etcd members (Debian's etcd, default durability, the fast
# election settings of tests/testing/etcd_cluster.h) and two snapconfd replicas
# with --store=etcd on free loopback ports with fresh data dirs, pins every
# server to core 0 and the load generator (snapconf-bench) to core 1 where there
# are two cores, and measures with the same client, the same in-flight count and
# the same number of connections:
#   - point reads: spread over both replicas vs etcd's serializable Range
#     spread over the three members;
#   - watch fan-out: subscribers spread over both replicas vs over the members;
#   - write throughput with 1/16/256 writers: through the replicas (spread over
#     both) vs Puts straight to etcd (spread over the members).
# Server CPU is the sum over all five processes. Prints one table (ratio =
# replicas / etcd); raw results go to OUT/results.json, OUT/table.txt and
# OUT/runs/*.json.
#
#   bench/compare-replicas.sh [--short] [--build-dir DIR] [--out DIR]
#
# --short: one second per workload and 100 subscribers, for the bench-smoke
# test; it checks that every workload completes against both and asserts no
# speed (20-30 s). The long mode takes about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

short=0 build=build out=""
while (($#)); do
  case "$1" in
    --short) short=1 ;;
    --build-dir) build=$2; shift ;;
    --out) out=$2; shift ;;
    *) echo "usage: $0 [--short] [--build-dir DIR] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

bench_bin="$build/bench/snapconf_bench/snapconf-bench"
snapconfd_bin="$build/service/snapconfd"
for f in "$bench_bin" "$snapconfd_bin"; do
  [ -x "$f" ] || { echo "compare-replicas: $f is missing; build snapconf-bench and snapconfd" >&2; exit 1; }
done
for tool in etcd etcdctl jq; do
  command -v "$tool" >/dev/null || { echo "compare-replicas: $tool is not installed (scripts/deps.sh)" >&2; exit 1; }
done

if ((short)); then
  duration=1s keys=1000 read_levels="64" write_levels="1 16 256" watchers=100 rounds=3
  sustained=1s connections=4 watch_connections=4
else
  duration=10s keys=10000 read_levels="64 256" write_levels="1 16 256" watchers=1000 rounds=10
  sustained=5s connections=6 watch_connections=12
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compare-replicas.XXXXXX")
if [ -z "$out" ]; then
  if ((short)); then out="$tmp/out"; else out="$repo/bench/results-replicas"; fi
fi
mkdir -p "$out/runs"
rm -f "$out"/runs/*.json "$out/runs/log.txt"

pids=()  # every server started, etcd members first
stop_all() {  # SIGTERM, then SIGKILL after 15 s
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  rm -f "$tmp"/*.pid
}
cleanup() {
  stop_all
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The watchdog and core pinning ($pin_server, $pin_load).
. bench/servers-common.sh  # the working directory is the repository root
start_watchdog

used_ports=" "
free_port() {  # sets port: a loopback port nothing listens on and not handed out before
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    case "$used_ports" in *" $port "*) continue ;; esac
    if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then used_ports+="$port "; return 0; fi
  done
  return 1
}

# start_etcd: three members; sets etcd_endpoints and etcd_pids.
start_etcd() {
  local cluster="" i
  local -a cports pports
  etcd_endpoints="" etcd_pids=""
  for i in 0 1 2; do
    free_port; cports[i]=$port
    free_port; pports[i]=$port
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${pports[i]}"
    etcd_endpoints+="${etcd_endpoints:+,}127.0.0.1:${cports[i]}"
  done
  for i in 0 1 2; do
    $pin_server etcd --name "m$i" --data-dir "$tmp/etcd-m$i" \
      --listen-client-urls "http://127.0.0.1:${cports[i]}" \
      --advertise-client-urls "http://127.0.0.1:${cports[i]}" \
      --listen-peer-urls "http://127.0.0.1:${pports[i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${pports[i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token compare-replicas \
      --heartbeat-interval 10 --election-timeout 100 --max-txn-ops 1024 \
      --logger zap --log-outputs stderr --log-level warn >>"$tmp/etcd-m$i.log" 2>&1 &
    pids+=($!)
    echo "$!" >"$tmp/etcd-m$i.pid"
    etcd_pids+="${etcd_pids:+,}$!"
  done
  # At most 30 s, so that a cluster that never forms is reported with its
  # logs well within a test runner's timeout.
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    ETCDCTL_API=3 etcdctl --endpoints="$etcd_endpoints" --command-timeout=1s endpoint health \
      >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "compare-replicas: the etcd cluster did not become healthy; member logs:" >&2
  tail -n 5 "$tmp"/etcd-m*.log >&2
  return 1
}

# start_replicas: two snapconfd on the cluster; sets replica_endpoints and replica_pids.
start_replicas() {
  local r
  replica_endpoints="" replica_pids=""
  for r in 0 1; do
    $pin_server "$snapconfd_bin" --listen=127.0.0.1:0 --store=etcd --etcd-endpoints="$etcd_endpoints" \
      --ready-file="$tmp/ready$r" \
      --watch-max-streams=$((watchers + 100)) --watch-max-streams-per-peer=$((watchers + 100)) \
      >>"$tmp/snapconfd$r.log" 2>&1 &
    pids+=($!)
    echo "$!" >"$tmp/snapconfd$r.pid"
    replica_pids+="${replica_pids:+,}$!"
    for _ in $(seq 600); do
      [ -s "$tmp/ready$r" ] && break
      kill -0 "$!" 2>/dev/null || { tail -5 "$tmp/snapconfd$r.log" >&2; return 1; }
      sleep 0.05
    done
    [ -s "$tmp/ready$r" ] || { echo "compare-replicas: replica $r did not start" >&2; return 1; }
    replica_endpoints+="${replica_endpoints:+,}$(cat "$tmp/ready$r")"
  done
}

# CPU seconds (user + system) of a comma-separated list of processes.
clk_tck=$(getconf CLK_TCK)
cpu_s() {
  local pid sum=0
  for pid in ${1//,/ }; do
    # Fields 14 and 15 after the command name; our servers' names have no spaces.
    sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$sum" -v k="$clk_tck" 'BEGIN { printf "%.3f", t / k }'
}

failures=0
# run TARGET LABEL [snapconf-bench flags...]: one measured run, JSON in runs/.
# TARGET is etcd (the members) or replicas. Also records the CPU the members
# and the replicas used over the whole invocation, and splits the server CPU
# per operation of the unary runs by it (for them the invocation is the
# measured phase plus connecting; the watch runs open streams first, so their
# CPU per delivery is not split).
run() {
  local target=$1 label=$2 proto addr e0 r0
  shift 2
  if [ "$target" = etcd ]; then proto=etcd addr=$etcd_endpoints; else proto=snapconf addr=$replica_endpoints; fi
  local file="$out/runs/$label.$target.json"
  e0=$(cpu_s "$etcd_pids") r0=$(cpu_s "$replica_pids")
  if ! $pin_load "$bench_bin" --target="$proto" --endpoint="$addr" \
      --server_pids="$etcd_pids,$replica_pids" --label="$label" --output="$file" "$@" \
      >>"$out/runs/log.txt" 2>&1; then
    echo "compare-replicas: FAILED: $target $label $*" >&2
    tail -5 "$out/runs/log.txt" >&2
    failures=$((failures + 1))
  fi
  if [ -f "$file" ]; then
    jq --arg t "$target" --argjson e "$(awk -v a="$e0" -v b="$(cpu_s "$etcd_pids")" 'BEGIN { print b - a }')" \
      --argjson r "$(awk -v a="$r0" -v b="$(cpu_s "$replica_pids")" 'BEGIN { print b - a }')" \
      '.target = $t | .metrics.etcd_members_cpu_s = $e | .metrics.replicas_cpu_s = $r
       | .metrics.replicas_cpu_share = (if ($e + $r) > 0 then $r / ($e + $r) else 0 end)
       | if .metrics.server_cpu_us_per_op then
           .metrics.etcd_members_cpu_us_per_op = .metrics.server_cpu_us_per_op * (1 - .metrics.replicas_cpu_share)
           | .metrics.replicas_cpu_us_per_op = .metrics.server_cpu_us_per_op * .metrics.replicas_cpu_share
         else . end' \
      "$file" >"$file.tmp" && mv "$file.tmp" "$file"
  fi
}
# both LABEL [flags...]: the run against both; the order alternates from one
# workload to the next so that drifting machine load hits both.
turn=0
both() {
  if ((turn % 2 == 0)); then run etcd "$@"; run replicas "$@"; else run replicas "$@"; run etcd "$@"; fi
  turn=$((turn + 1))
  echo "  done: $1 (${SECONDS}s)" >&2
}

load_at_start=$(uptime)
echo "compare-replicas: $( ((short)) && echo short || echo long) mode, $(nproc) cores, load: ${load_at_start##*load average: }" >&2
start_etcd
start_replicas
echo "  cluster up: etcd $etcd_endpoints, replicas $replica_endpoints (${SECONDS}s)" >&2
common=(--connections="$connections" --keys="$keys" --duration="$duration")
# Load the read data set once through each; the read runs below reuse it.
run etcd load --workload=load --keys="$keys"
run replicas load --workload=load --keys="$keys"

for c in $read_levels; do both "get-c$c" --workload=get --preload=false --inflight="$c" "${common[@]}"; done
for c in $write_levels; do both "put-c$c" --workload=put --inflight="$c" "${common[@]}"; done
both "fanout-n$watchers" --workload=watch-fanout --watchers="$watchers" \
  --connections="$watch_connections" --rounds="$rounds" --inflight=16 --duration="$sustained"
stop_all

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
jq -n --arg date "$(date -u +%FT%TZ)" --arg mode "$( ((short)) && echo short || echo long)" \
  --arg start "$load_at_start" --arg uptime "$(uptime)" --arg cpu "$cpu" --arg nproc "$(nproc)" \
  --arg pinning "${pin_server:-none} / ${pin_load:-none}" --arg etcd "$(etcd --version | head -1)" \
  --arg kernel "$(uname -r)" \
  '{date: $date, mode: $mode, topology: "3 etcd members, 2 snapconfd replicas (--store=etcd)",
    machine: {cpu: $cpu, cores: ($nproc|tonumber), kernel: $kernel, load_at_start: $start,
    load_at_end: $uptime, pinning_server_load: $pinning, etcd: $etcd}, runs: [inputs]}' \
  "$out"/runs/*.json >"$out/results.json"

# The table: one row per metric; ratio = replicas / etcd.
jq -r '.runs[] | . as $r | .metrics | to_entries[] | "\($r.label) \($r.target) \(.key) \(.value)"' \
  "$out/results.json" >"$tmp/metrics.txt"
val() {  # val LABEL TARGET METRIC
  awk -v l="$1" -v t="$2" -v m="$3" '$1 == l && $2 == t && $3 == m { print $4; exit }' "$tmp/metrics.txt"
}
fmt() { [ -z "$1" ] && { echo "-"; return; }; awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }'; }
row() {  # row TITLE LABEL METRIC BETTER [SCALE] [noratio]
  local title=$1 label=$2 metric=$3 better=$4 scale=${5:-1} e r ratio
  e=$(val "$label" etcd "$metric") r=$(val "$label" replicas "$metric")
  [ -n "$e" ] && e=$(awk -v v="$e" -v k="$scale" 'BEGIN { print v / k }')
  [ -n "$r" ] && r=$(awk -v v="$r" -v k="$scale" 'BEGIN { print v / k }')
  ratio=$(awk -v e="${e:-0}" -v r="${r:-0}" 'BEGIN { if (e > 0 && r > 0) printf "%.2fx", r / e; else print "-" }')
  [ "${6-}" = noratio ] && ratio="-"
  printf '%s\t%s\t%s\t%s\t%s\n' "$title" "$(fmt "$e")" "$(fmt "$r")" "$ratio" "$better"
}
{
  printf 'metric\tetcd\treplicas\tratio r/e\tbetter\n'
  for c in $read_levels; do
    row "get ops/s, $c in flight (etcd serializable)" "get-c$c" ops_per_s higher
    row "  get, $c in flight: p50 ms" "get-c$c" p50_us lower 1000
    row "  get, $c in flight: p99 ms" "get-c$c" p99_us lower 1000
    row "  get, $c in flight: server CPU us/op (all 5)" "get-c$c" server_cpu_us_per_op lower
    row "    of which etcd members" "get-c$c" etcd_members_cpu_us_per_op lower 1 noratio
    row "    of which replicas" "get-c$c" replicas_cpu_us_per_op lower 1 noratio
  done
  for c in $write_levels; do
    row "put ops/s, $c writers" "put-c$c" ops_per_s higher
    row "  put, $c writers: p50 ms" "put-c$c" p50_us lower 1000
    row "  put, $c writers: p99 ms" "put-c$c" p99_us lower 1000
    row "  put, $c writers: server CPU us/op (all 5)" "put-c$c" server_cpu_us_per_op lower
    row "    of which etcd members" "put-c$c" etcd_members_cpu_us_per_op lower
    row "    of which replicas" "put-c$c" replicas_cpu_us_per_op lower 1 noratio
  done
  n=$watchers
  row "fan-out to $n: ms to last (median)" "fanout-n$n" fanout_to_last_p50_ms lower
  row "fan-out to $n: ms to last (max)" "fanout-n$n" fanout_to_last_max_ms lower
  row "fan-out to $n: put ack ms (median)" "fanout-n$n" fanout_put_ack_p50_ms lower
  row "fan-out to $n: deliveries/s (16 writers)" "fanout-n$n" deliveries_per_s higher
  row "fan-out to $n: delivered share" "fanout-n$n" delivered_share higher
  row "fan-out to $n: server CPU us/delivery (all 5)" "fanout-n$n" server_cpu_us_per_delivery lower
  row "fan-out to $n: writes/s during it" "fanout-n$n" sustained_writes_per_s higher
  row "fan-out to $n: writes failed" "fanout-n$n" sustained_put_errors lower
} >"$tmp/table.tsv"
column -t -s $'\t' "$tmp/table.tsv" | tee "$out/table.txt"
cp "$tmp/table.tsv" "$out/table.tsv"
echo "compare-replicas: results in $out (load at end: $(uptime | sed 's/.*load average: //'))" >&2
if ((failures)); then
  echo "compare-replicas: $failures run(s) failed" >&2
  exit 1
fi
