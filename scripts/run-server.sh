#!/usr/bin/env bash
# Installs what is missing, builds snapconfd and runs it on the embedded SQLite
# store: gRPC on 127.0.0.1:7070, data in ./snapconf-data. Extra arguments go to
# snapconfd (see `snapconfd --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build -- snapconfd snapconfctl
exec build/service/snapconfd --listen=127.0.0.1:7070 --data-dir=./snapconf-data "$@"
