#!/usr/bin/env bash
# Installs the Debian 12 packages snapconf builds and tests with. Idempotent and
# quiet when everything is already there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config clang clang-format clang-tidy
  libclang-rt-14-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev sqlite3
  nlohmann-json3-dev libyaml-cpp-dev libssl-dev
  etcd-server etcd-client docker-compose
  golang-etcd-server-dev golang-github-gogo-protobuf-dev
  golang-github-grpc-ecosystem-grpc-gateway-dev
  openssl procps
  jq gnuplot-nox
  libfiu-dev fiu-utils
  libcpp-httplib-dev prometheus
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# buf (the API linter) runs through npx; any Node.js with npm will do.
command -v npx >/dev/null 2>&1 || missing+=(nodejs npm)

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# The Debian etcd-server package starts a system-wide etcd on 2379/2380 where
# systemd runs; snapconf's tests start their own members on free ports, so the
# system one is stopped to keep the machine quiet.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi

# Only promtool, from the prometheus package, is used (the metrics tests check
# the /metrics output with it); the server the package enables is stopped.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
