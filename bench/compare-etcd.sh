#!/usr/bin/env bash
# Side-by-side comparison of snapconfd and etcd on this machine.
#
# Starts a single-member etcd (default durability) and snapconfd (SQLite,
# default durability) on free loopback ports with fresh data dirs, pins the
# servers to core 0 and the load generator (snapconf-bench) to core 1 where
# there are two cores, runs every workload against both servers, alternating
# which goes first, and prints one table. Raw results go to OUT/results.json
# (every run), OUT/table.txt and OUT/runs/*.json; bench/charts.sh draws them.
#
#   bench/compare-etcd.sh [--short] [--build-dir DIR] [--out DIR] [--skip-scale]
#
# --short: one second per workload and small data sets, for the bench-smoke
# test; it checks that every workload completes against both servers and
# asserts no speed. The long mode takes about 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

short=0 build=build out="" skip_scale=0
while (($#)); do
  case "$1" in
    --short) short=1 ;;
    --build-dir) build=$2; shift ;;
    --out) out=$2; shift ;;
    --skip-scale) skip_scale=1 ;;
    *) echo "usage: $0 [--short] [--build-dir DIR] [--out DIR] [--skip-scale]" >&2; exit 2 ;;
  esac
  shift
done

bench_bin="$build/bench/snapconf_bench/snapconf-bench"
snapconfd_bin="$build/service/snapconfd"
for f in "$bench_bin" "$snapconfd_bin"; do
  [ -x "$f" ] || { echo "compare-etcd: $f is missing; build snapconf-bench and snapconfd" >&2; exit 1; }
done
for tool in etcd jq; do
  command -v "$tool" >/dev/null || { echo "compare-etcd: $tool is not installed (scripts/deps.sh)" >&2; exit 1; }
done

if ((short)); then
  duration=1s keys=1000 read_levels="16" write_levels="1 256" fanout_levels="100"
  rounds=3 sustained=1s scale_levels="2000" connections=2
else
  duration=10s keys=10000 read_levels="1 16 64 256" write_levels="1 16 256"
  fanout_levels="100 1000 10000" rounds=10 sustained=5s scale_levels="100000 1000000"
  connections=4
fi
((skip_scale)) && scale_levels=""
max_watchers=0
for n in $fanout_levels; do ((n > max_watchers)) && max_watchers=$n; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compare-etcd.XXXXXX")
if [ -z "$out" ]; then
  if ((short)); then out="$tmp/out"; else out="$repo/bench/results"; fi
fi
mkdir -p "$out/runs"
rm -f "$out"/runs/*.json

etcd_pid="" snapconf_pid=""
stop_pid() {  # stop_pid PID: SIGTERM, then SIGKILL after 15 s
  local pid=$1
  [ -n "$pid" ] || return 0
  for f in "$tmp"/*.pid; do [ "$(cat "$f" 2>/dev/null)" = "$pid" ] && rm -f "$f"; done
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$etcd_pid"
  stop_pid "$snapconf_pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The watchdog and core pinning ($pin_server, $pin_load).
. bench/servers-common.sh  # the working directory is the repository root
start_watchdog

free_port() {  # a loopback port nothing listens on
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

now_ns() { date +%s%N; }

# start_etcd DATA_DIR: sets etcd_pid and etcd_addr; leaves start time in started_ns.
start_etcd() {
  local data=$1 cport pport
  for attempt in 1 2 3; do
    cport=$(free_port) pport=$(free_port)
    started_ns=$(now_ns)
    $pin_server etcd --name bench --data-dir "$data" \
      --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
      --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "bench=http://127.0.0.1:$pport" --initial-cluster-state new \
      >>"$tmp/etcd.log" 2>&1 &
    etcd_pid=$!
    echo "$etcd_pid" >"$tmp/etcd.pid"
    etcd_addr="127.0.0.1:$cport"
    sleep 0.2
    kill -0 "$etcd_pid" 2>/dev/null && return 0
    echo "compare-etcd: etcd exited at start (attempt $attempt), see its log:" >&2
    tail -5 "$tmp/etcd.log" >&2
  done
  return 1
}

# start_snapconf DATA_DIR: sets snapconf_pid and snapconf_addr.
start_snapconf() {
  local data=$1
  rm -f "$tmp/ready"
  started_ns=$(now_ns)
  $pin_server "$snapconfd_bin" --listen=127.0.0.1:0 --data-dir="$data" --ready-file="$tmp/ready" \
    --watch-max-streams=$((max_watchers + 100)) --watch-max-streams-per-peer=$((max_watchers + 100)) \
    >>"$tmp/snapconfd.log" 2>&1 &
  snapconf_pid=$!
  echo "$snapconf_pid" >"$tmp/snapconf.pid"
  for _ in $(seq 600); do
    [ -s "$tmp/ready" ] && break
    kill -0 "$snapconf_pid" 2>/dev/null || { tail -5 "$tmp/snapconfd.log" >&2; return 1; }
    sleep 0.05
  done
  [ -s "$tmp/ready" ] || { echo "compare-etcd: snapconfd did not start" >&2; return 1; }
  snapconf_addr=$(cat "$tmp/ready")
}

failures=0
# run TARGET LABEL [snapconf-bench flags...]: one measured run, JSON in runs/.
run() {
  local target=$1 label=$2 addr pid
  shift 2
  if [ "$target" = etcd ]; then addr=$etcd_addr pid=$etcd_pid; else addr=$snapconf_addr pid=$snapconf_pid; fi
  local file="$out/runs/$label.$target.json"
  if ! $pin_load "$bench_bin" --target="$target" --endpoint="$addr" --server_pid="$pid" \
      --label="$label" --output="$file" "$@" >>"$out/runs/log.txt" 2>&1; then
    echo "compare-etcd: FAILED: $target $label $*" >&2
    tail -5 "$out/runs/log.txt" >&2
    failures=$((failures + 1))
  fi
}
# both LABEL [flags...]: the run against both servers; the order alternates
# from one workload to the next so that drifting machine load hits both.
turn=0
both() {
  if ((turn % 2 == 0)); then run etcd "$@"; run snapconf "$@"; else run snapconf "$@"; run etcd "$@"; fi
  turn=$((turn + 1))
  echo "  done: $1 (${SECONDS}s)" >&2
}

load_at_start=$(uptime)
echo "compare-etcd: $( ((short)) && echo short || echo long) mode, $(nproc) cores, load: ${load_at_start##*load average: }" >&2
start_etcd "$tmp/etcd-main"
start_snapconf "$tmp/snapconf-main"
common=(--connections="$connections" --keys="$keys" --duration="$duration")
run etcd ready --workload=ready --duration=30s --since_unix_ns=0
run snapconf ready --workload=ready --duration=30s --since_unix_ns=0
# Load the read data set once per server; the read runs below reuse it.
run etcd load --workload=load --keys="$keys"
run snapconf load --workload=load --keys="$keys"

for c in $read_levels; do both "get-c$c" --workload=get --preload=false --inflight="$c" "${common[@]}"; done
both get-lin --workload=get --preload=false --linearizable --inflight=64 "${common[@]}"
for c in $write_levels; do both "put-c$c" --workload=put --inflight="$c" "${common[@]}"; done
both mixed --workload=mixed --preload=false --write_percent=5 --inflight=64 "${common[@]}"
for n in $fanout_levels; do
  conns=$((n >= 1000 ? 10 : connections))
  both "fanout-n$n" --workload=watch-fanout --watchers="$n" --connections="$conns" \
    --rounds="$rounds" --inflight=16 --duration="$sustained"
done
stop_pid "$etcd_pid"; etcd_pid=""
stop_pid "$snapconf_pid"; snapconf_pid=""

# Memory per idle subscriber on fresh servers: a server that already served
# the runs above reuses memory it freed, and its RSS would barely move.
start_etcd "$tmp/etcd-mem"
start_snapconf "$tmp/snapconf-mem"
run etcd ready-mem --workload=ready --duration=30s --since_unix_ns=0
run snapconf ready-mem --workload=ready --duration=30s --since_unix_ns=0
both watch-mem --workload=watch-memory --watchers="$max_watchers" \
  --connections=$((max_watchers >= 1000 ? 10 : connections))
stop_pid "$etcd_pid"; etcd_pid=""
stop_pid "$snapconf_pid"; snapconf_pid=""

# Data scale: a fresh server per size, loaded, stopped, then timed from exec
# until it answers a read.
for n in $scale_levels; do
  for target in etcd snapconf; do
    data="$tmp/$target-scale-$n"
    if [ "$target" = etcd ]; then start_etcd "$data"; else start_snapconf "$data"; fi
    run "$target" "scale-$n-start0" --workload=ready --duration=60s --since_unix_ns="$started_ns"
    run "$target" "scale-$n-load" --workload=load --keys="$n"
    if [ "$target" = etcd ]; then stop_pid "$etcd_pid"; etcd_pid=""; else stop_pid "$snapconf_pid"; snapconf_pid=""; fi
    du_kib=$(du -sk "$data" | cut -f1)
    sync
    if [ "$target" = etcd ]; then start_etcd "$data"; else start_snapconf "$data"; fi
    run "$target" "scale-$n" --workload=ready --duration=300s --since_unix_ns="$started_ns" --keys="$n"
    # The data dir size goes into that run's JSON.
    f="$out/runs/scale-$n.$target.json"
    if [ -f "$f" ]; then
      jq --argjson kib "$du_kib" '.metrics.data_dir_kib = $kib' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    fi
    if [ "$target" = etcd ]; then stop_pid "$etcd_pid"; etcd_pid=""; else stop_pid "$snapconf_pid"; snapconf_pid=""; fi
    rm -rf "$data"
    echo "  done: scale-$n $target (${SECONDS}s)" >&2
  done
done

# One JSON document with the machine and every run.
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
jq -n --arg date "$(date -u +%FT%TZ)" --arg mode "$( ((short)) && echo short || echo long)" \
  --arg start "$load_at_start" --arg uptime "$(uptime)" --arg cpu "$cpu" --arg nproc "$(nproc)" \
  --arg pinning "${pin_server:-none} / ${pin_load:-none}" --arg etcd "$(etcd --version | head -1)" \
  --arg kernel "$(uname -r)" \
  '{date: $date, mode: $mode, machine: {cpu: $cpu, cores: ($nproc|tonumber), kernel: $kernel,
    load_at_start: $start, load_at_end: $uptime, pinning_server_load: $pinning, etcd: $etcd}, runs: [inputs]}' \
  "$out"/runs/*.json >"$out/results.json"

# The table: one row per metric; ratio = snapconf / etcd.
# Every metric of every run as "label target metric value", read once.
jq -r '.runs[] | . as $r | .metrics | to_entries[] | "\($r.label) \($r.target) \(.key) \(.value)"' \
  "$out/results.json" >"$tmp/metrics.txt"
val() {  # val LABEL TARGET METRIC
  awk -v l="$1" -v t="$2" -v m="$3" '$1 == l && $2 == t && $3 == m { print $4; exit }' "$tmp/metrics.txt"
}
fmt() { [ -z "$1" ] && { echo "-"; return; }; awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.2f", v }'; }
lat() {  # lat LABEL TARGET PREFIX: "p50/p99" in ms
  local a b
  a=$(val "$1" "$2" "${3}p50_us") b=$(val "$1" "$2" "${3}p99_us")
  [ -z "$a" ] && { echo "-"; return; }
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f/%.2f", a / 1000, b / 1000 }'
}
row() {  # row TITLE LABEL METRIC BETTER [LATENCY_PREFIX] [SCALE]
  local title=$1 label=$2 metric=$3 better=$4 prefix=${5-none} scale=${6:-1} e s ratio
  e=$(val "$label" etcd "$metric") s=$(val "$label" snapconf "$metric")
  [ -n "$e" ] && e=$(awk -v v="$e" -v k="$scale" 'BEGIN { print v / k }')
  [ -n "$s" ] && s=$(awk -v v="$s" -v k="$scale" 'BEGIN { print v / k }')
  ratio=$(awk -v e="${e:-0}" -v s="${s:-0}" 'BEGIN { if (e > 0 && s > 0) printf "%.2fx", s / e; else print "-" }')
  local le="-" ls="-"
  if [ "$prefix" != none ]; then le=$(lat "$label" etcd "$prefix") ls=$(lat "$label" snapconf "$prefix"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$title" "$(fmt "$e")" "$(fmt "$s")" "$ratio" "$better" "$le" "$ls"
}
{
  printf 'metric\tetcd\tsnapconf\tratio s/e\tbetter\tetcd p50/p99 ms\tsnapconf p50/p99 ms\n'
  for c in $read_levels; do row "get ops/s, $c in flight (etcd serializable)" "get-c$c" ops_per_s higher ""; done
  for c in $read_levels; do
    row "  get, $c in flight: server CPU us/op" "get-c$c" server_cpu_us_per_op lower none
    row "  get, $c in flight: client CPU us/op" "get-c$c" client_cpu_us_per_op lower none
    row "  get, $c in flight: server cores used" "get-c$c" server_cores_used lower none
  done
  row "get ops/s, 64 in flight (etcd linearizable)" get-lin ops_per_s higher ""
  for c in $write_levels; do
    row "durable put ops/s, $c writers" "put-c$c" ops_per_s higher ""
    row "  put, $c writers: server CPU us/op" "put-c$c" server_cpu_us_per_op lower none
    row "  put, $c writers: server cores used" "put-c$c" server_cores_used lower none
  done
  row "mixed 95/5 ops/s, 64 in flight" mixed ops_per_s higher ""
  row "  mixed: read p50 ms" mixed read_p50_us lower read_ 1000
  row "  mixed: write p50 ms" mixed write_p50_us lower write_ 1000
  for n in $fanout_levels; do
    row "fan-out to $n: ms to last (median)" "fanout-n$n" fanout_to_last_p50_ms lower
    row "fan-out to $n: ms to last (max)" "fanout-n$n" fanout_to_last_max_ms lower
    row "fan-out to $n: put ack ms (median)" "fanout-n$n" fanout_put_ack_p50_ms lower
    row "fan-out to $n: deliveries/s" "fanout-n$n" deliveries_per_s higher
    row "fan-out to $n: server CPU us/delivery" "fanout-n$n" server_cpu_us_per_delivery lower
    row "fan-out to $n: writes/s during it" "fanout-n$n" sustained_writes_per_s higher sustained_put_
    row "fan-out to $n: writes timed out" "fanout-n$n" sustained_put_errors lower
  done
  row "watch: server KiB per idle subscriber ($max_watchers, fresh server)" watch-mem rss_per_subscriber_kib lower
  row "watch: server RSS MiB with $max_watchers idle subscribers" watch-mem server_rss_with_streams_kib lower none 1024
  for n in $scale_levels; do
    row "$n keys: load keys/s (128/txn)" "scale-$n-load" load_keys_per_s higher
    row "$n keys: start-up ms" "scale-$n" startup_ms lower
    row "$n keys: server CPU ms until ready" "scale-$n" server_cpu_ms_until_ready lower
    row "$n keys: server RSS MiB" "scale-$n" server_rss_after_1s_kib lower none 1024
    row "$n keys: data dir MiB" "scale-$n" data_dir_kib lower none 1024
  done
} >"$tmp/table.tsv"
column -t -s $'\t' "$tmp/table.tsv" | tee "$out/table.txt"
cp "$tmp/table.tsv" "$out/table.tsv"
echo "compare-etcd: results in $out (load at end: $(uptime | sed 's/.*load average: //'))" >&2
if ((failures)); then
  echo "compare-etcd: $failures run(s) failed" >&2
  exit 1
fi
