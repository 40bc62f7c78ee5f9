#!/usr/bin/env bash
# Installs what is missing, lints the API, builds everything and runs the test
# suite (ctest labels unit, integration, fault and bench-smoke; the tests start
# their own snapconfd processes on loopback ports).
#
#   scripts/test.sh            the whole suite
#   scripts/test.sh --tsan     the concurrency tests under ThreadSanitizer
#   scripts/test.sh --asan     the whole suite under AddressSanitizer + UBSan
#   scripts/test.sh --fuzz     the libFuzzer targets, $FUZZ_SECONDS (default 10) each
set -euo pipefail
cd "$(dirname "$0")/.."

mode=default
case "${1:-}" in
  --tsan) mode=tsan ;;
  --asan) mode=asan ;;
  --fuzz) mode=fuzz ;;
  "") ;;
  *) echo "usage: $0 [--tsan|--asan|--fuzz]" >&2; exit 2 ;;
esac

scripts/deps.sh

if [ "$mode" = default ]; then
  echo "== buf lint (proto/)"
  (cd proto && npx --yes @bufbuild/buf@1.75.0 lint)
fi

jobs=$(nproc)
case "$mode" in
  default)
    scripts/build.sh build
    ctest --test-dir build --output-on-failure -j "$jobs" -L 'unit|integration|fault|bench-smoke' \
      --timeout 600
    ;;
  tsan)
    scripts/build.sh build-tsan -DSNAPCONF_TSAN=ON -DSNAPCONF_BUILD_BENCH=OFF
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
      ctest --test-dir build-tsan --output-on-failure -j "$jobs" -L concurrency --timeout 900
    ;;
  asan)
    scripts/build.sh build-asan -DSNAPCONF_ASAN=ON -DSNAPCONF_BUILD_BENCH=OFF
    ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
      ctest --test-dir build-asan --output-on-failure -j "$jobs" -L 'unit|integration|fault' \
      --timeout 900
    ;;
  fuzz)
    scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
    ;;
esac
