#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in
# build-fuzz and runs each from its committed seed corpus for a while. Any
# crash, leak, timeout or out-of-memory fails the run; the input that caused it
# is left in build-fuzz/findings/<target>/ (add it to tests/fuzz/corpus/<target>/
# once fixed, so the unit tests replay it).
#
#   scripts/fuzz.sh              each target for 10 s (what CI runs)
#   scripts/fuzz.sh 600          each target for 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
targets=(validate_fuzz cache_decode_fuzz page_token_fuzz snapshot_diff_fuzz)
build_dir=build-fuzz

CC=clang CXX=clang++ scripts/build.sh "$build_dir" -DSNAPCONF_FUZZ=ON -DSNAPCONF_BUILD_BENCH=OFF \
  -- "${targets[@]}"

status=0
for t in "${targets[@]}"; do
  work="$build_dir/tests/fuzz/corpus/$t"
  findings="$build_dir/findings/$t"
  mkdir -p "$work" "$findings"
  echo "== fuzzing $t for ${seconds}s"
  if ! ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$build_dir/tests/fuzz/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$findings/" -print_final_stats=1 \
    "$work" "tests/fuzz/corpus/$t" 2>"$build_dir/findings/$t.log"; then
    echo "FAILED: $t (log: $build_dir/findings/$t.log, inputs: $findings/)" >&2
    tail -n 40 "$build_dir/findings/$t.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$build_dir/findings/$t.log" | tail -n 2 || true
  fi
done
exit $status
