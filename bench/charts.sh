#!/usr/bin/env bash
# Draws PNG charts from the results.json that bench/compare-etcd.sh writes:
#   throughput-vs-concurrency.png  get and durable put ops/s against calls in flight
#   latency-percentiles.png        p50/p90/p99/p99.9 of get (64 in flight) and put (256 writers)
#   fanout.png                     one change to N subscribers: ms to the last one,
#                                  and sustained deliveries/s
#
#   bench/charts.sh [RESULTS_JSON] [OUT_DIR]     (defaults: bench/results/results.json, its dir)
# Needs gnuplot (Debian gnuplot-nox) and jq.
set -euo pipefail
json=${1:-$(dirname "$0")/results/results.json}
out=${2:-$(dirname "$json")}
for tool in gnuplot jq; do
  command -v "$tool" >/dev/null || { echo "charts: $tool is not installed (scripts/deps.sh)" >&2; exit 1; }
done
[ -f "$json" ] || { echo "charts: $json not found; run bench/compare-etcd.sh first" >&2; exit 1; }
mkdir -p "$out"
dat=$(mktemp -d)
trap 'rm -rf "$dat"' EXIT

# series WORKLOAD_PREFIX TARGET X_FIELD METRIC: "x value" lines, sorted by x.
series() {
  jq -r --arg p "$1" --arg t "$2" --arg x "$3" --arg m "$4" \
    '.runs[] | select(.target == $t and (.label | test("^" + $p + "[0-9]+$")) and .ok)
     | "\(.[$x]) \(.metrics[$m])"' "$json" | sort -n
}
for t in etcd snapconf; do
  series get-c "$t" inflight ops_per_s >"$dat/get-$t"
  series put-c "$t" inflight ops_per_s >"$dat/put-$t"
  series fanout-n "$t" watchers fanout_to_last_p50_ms >"$dat/fanout-$t"
  series fanout-n "$t" watchers deliveries_per_s >"$dat/deliv-$t"
done
# Percentile rows: "p50 etcd snapconf" for one run label, in milliseconds.
percentiles() {
  for p in p50 p90 p99 p999; do
    e=$(jq -r --arg l "$1" --arg m "${p}_us" '[.runs[] | select(.label == $l and .target == "etcd") | .metrics[$m]][0] // 0' "$json")
    s=$(jq -r --arg l "$1" --arg m "${p}_us" '[.runs[] | select(.label == $l and .target == "snapconf") | .metrics[$m]][0] // 0' "$json")
    name=$p; [ "$p" = p999 ] && name=p99.9
    awk -v n="$name" -v e="$e" -v s="$s" 'BEGIN { printf "%s %.4f %.4f\n", n, e / 1000, s / 1000 }'
  done
}
get_label=$(jq -r '[.runs[].label | select(test("^get-c[0-9]+$"))] | unique | map(ltrimstr("get-c") | tonumber) | map(select(. <= 64)) | max // empty' "$json")
put_label=$(jq -r '[.runs[].label | select(test("^put-c[0-9]+$"))] | unique | map(ltrimstr("put-c") | tonumber) | max // empty' "$json")
percentiles "get-c${get_label:-64}" >"$dat/lat-get"
percentiles "put-c${put_label:-256}" >"$dat/lat-put"
subtitle=$(jq -r '"\(.mode) run \(.date), \(.machine.cores) cores, \(.machine.pinning_server_load)"' "$json")

gnuplot <<EOF
set terminal pngcairo size 900,560 font "sans,10"
set key top left
set grid
set logscale x 2
set logscale y 10
set xlabel "calls in flight (writers for put)"
set ylabel "ops/s"
set output "$out/throughput-vs-concurrency.png"
set title "Throughput vs concurrency (etcd: serializable Range)\n{/*0.8 $subtitle}"
plot "$dat/get-etcd" using 1:2 with linespoints lw 2 title "etcd get", \
     "$dat/get-snapconf" using 1:2 with linespoints lw 2 title "snapconf get", \
     "$dat/put-etcd" using 1:2 with linespoints lw 2 dt 2 title "etcd durable put", \
     "$dat/put-snapconf" using 1:2 with linespoints lw 2 dt 2 title "snapconf durable put"

unset logscale x
set output "$out/latency-percentiles.png"
set multiplot layout 1,2 title "Latency percentiles (ms, log scale)\n{/*0.8 $subtitle}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xlabel ""
set ylabel "ms"
set title "get, ${get_label:-64} in flight"
plot "$dat/lat-get" using 2:xtic(1) title "etcd", "" using 3 title "snapconf"
set title "durable put, ${put_label:-256} writers"
plot "$dat/lat-put" using 2:xtic(1) title "etcd", "" using 3 title "snapconf"
unset multiplot

set style data linespoints
set logscale x 10
set output "$out/fanout.png"
set multiplot layout 1,2 title "Watch fan-out: one change to N subscribers\n{/*0.8 $subtitle}"
set xlabel "subscribers"
set ylabel "ms from Put to the last delivery (median)"
set title "time to the last subscriber"
plot "$dat/fanout-etcd" using 1:2 lw 2 title "etcd", "$dat/fanout-snapconf" using 1:2 lw 2 title "snapconf"
set ylabel "revisions delivered per second (all subscribers)"
set title "sustained deliveries/s, writers at full speed"
plot "$dat/deliv-etcd" using 1:2 lw 2 title "etcd", "$dat/deliv-snapconf" using 1:2 lw 2 title "snapconf"
unset multiplot
EOF
echo "charts: wrote $out/throughput-vs-concurrency.png $out/latency-percentiles.png $out/fanout.png"
