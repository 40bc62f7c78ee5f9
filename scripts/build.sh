#!/usr/bin/env bash
# Configures and builds snapconf. Usage: scripts/build.sh [BUILD_DIR] [cmake args...] [-- targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
cmake_args=()
targets=()
while (($#)); do
  if [ "$1" = "--" ]; then shift; targets=("$@"); break; fi
  cmake_args+=("$1"); shift
done
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}" >/dev/null
elif ((${#cmake_args[@]})); then
  cmake -S . -B "$build_dir" "${cmake_args[@]}" >/dev/null
fi
cmake --build "$build_dir" --parallel "$(nproc)" ${targets:+--target "${targets[@]}"}
