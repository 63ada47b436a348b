#!/usr/bin/env bash
# Builds and runs the gateway with its embedded defaults: data in ./vre-data, SQLite, a
# generated signing key and TLS certificate, listening on https://127.0.0.1:8443; and brings up
# the local Docker engine sandboxes run on, with a minimal image to try them with
# (`vre image allow vre-test/busybox:latest`).
# Extra arguments go to `vre server` (e.g. --listen 127.0.0.1:9443).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/docker/start-engine.sh
bash deploy/images/build-test-image.sh >/dev/null
cargo build --release --locked -p gateway --bin vre
exec ./target/release/vre server "$@"
