#!/usr/bin/env bash
# Builds and runs the gateway with its embedded defaults: data in ./vre-data, SQLite, a
# generated signing key and TLS certificate, listening on https://127.0.0.1:8443.
# Extra arguments go to `vre server` (e.g. --listen 127.0.0.1:9443).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p gateway --bin vre
exec ./target/release/vre server "$@"
