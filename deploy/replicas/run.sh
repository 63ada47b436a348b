#!/usr/bin/env bash
# Runs two gateway replicas on this machine, as deploy/replicas/README.md describes: one
# PostgreSQL database (`vre_replicas`, made if missing), one Docker engine, a blob store and a
# logs folder both use (./vre-replicas/shared), and the keys and TLS certificate of the first
# replica copied to the second before its first start, so that a token or the CA of one works
# with both. Replica A listens on https://127.0.0.1:8443, replica B on :8444; Ctrl-C stops both.
# VRE_BIN=path uses that `vre` instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

start_postgres
as_root su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = 'vre_replicas'\"" | grep -q 1 ||
    as_root su postgres -c "psql -qc 'CREATE DATABASE vre_replicas OWNER vre'"
bash deploy/docker/start-engine.sh
bash deploy/images/build-test-image.sh >/dev/null
if [ -z "${VRE_BIN:-}" ]; then
    cargo build --release --locked -p gateway --bin vre
    VRE_BIN=./target/release/vre
fi

mkdir -p vre-replicas/shared/blobs vre-replicas/shared/runs
pids=()
stop() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait
}
trap stop EXIT INT TERM

"$VRE_BIN" server --config deploy/replicas/replica-a.toml &
pids+=($!)
# The first start of A makes the keys and the certificate; B gets copies before its own.
for _ in $(seq 100); do
    [ -f vre-replicas/a/tls/ca.pem ] && [ -f vre-replicas/a/keys/token.pem ] && break
    sleep 0.1
done
if [ ! -d vre-replicas/b/keys ]; then
    mkdir -p vre-replicas/b
    cp -a vre-replicas/a/keys vre-replicas/a/tls vre-replicas/b/
fi
"$VRE_BIN" server --config deploy/replicas/replica-b.toml &
pids+=($!)
echo "replicas: A on https://127.0.0.1:8443, B on https://127.0.0.1:8444;" \
    "CA: vre-replicas/a/tls/ca.pem; tokens: $VRE_BIN token issue --data-dir vre-replicas/a ..." >&2
wait -n
