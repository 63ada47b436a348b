#!/usr/bin/env bash
# Tests the gateway against its own OpenAPI document with schemathesis, as a peer would: a fresh
# gateway on a free loopback port (fresh data dir, the local Docker engine when there is one),
# an admin token (also the analyst of one project, for uploads: see schemathesis.toml), then
# `st run` with its default checks and phases. Fails when schemathesis reports any failure or
# error, or leaves an operation untested.
#
#   pip install schemathesis && deploy/dev/schemathesis.sh
#
# VRE_BIN=path/to/vre skips the build; extra arguments go to `st run` (e.g. --max-examples 20).
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v st >/dev/null || { echo "schemathesis.sh: no \`st\`: pip install schemathesis" >&2; exit 2; }
vre=${VRE_BIN:-}
if [ -z "$vre" ]; then
    cargo build --locked --bin vre
    vre=target/debug/vre
fi

work=$(mktemp -d)
data=$work/data
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$vre" server --data-dir "$data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!

stop() {
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    # Whatever the run made on the engine carries this gateway's instance label.
    if command -v docker >/dev/null && [ -s "$data/instance-id" ]; then
        local label="vre.instance=$(cat "$data/instance-id")"
        docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null 2>&1 || true
        docker volume ls -q --filter "label=$label" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap stop EXIT

url=https://127.0.0.1:$port
for _ in $(seq 1 300); do
    if [ -s "$data/tls/ca.pem" ] && curl -sf --cacert "$data/tls/ca.pem" "$url/healthz" >/dev/null; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
token=$("$vre" token issue --sub root --role admin,analyst --data-dir "$data")
# A project whose analyst the token is, for uploads (see schemathesis.toml).
export VRE_ST_PROJECT=st-project
"$vre" project create "$VRE_ST_PROJECT" --title "schemathesis" --member root:analyst \
    --url "$url" --token "$token" --ca "$data/tls/ca.pem" >/dev/null

set +e
(cd "$work" && st --config-file "$OLDPWD/deploy/dev/schemathesis.toml" run "$url/openapi.json" --tls-verify "$data/tls/ca.pem" -H "Authorization: Bearer $token" \
    --output-sanitize false "$@") 2>&1 | tee "$work/st.log"
status=${PIPESTATUS[0]}
set -e

# Every operation must have been tested: "Selected: N/N" and "Tested: N", nothing errored.
selected=$(sed -n 's/^ *Selected: \([0-9]*\)\/\([0-9]*\)$/\1 \2/p' "$work/st.log")
tested=$(sed -n 's/^ *Tested: \([0-9]*\)$/\1/p' "$work/st.log")
if [ "$status" -ne 0 ]; then
    echo "schemathesis.sh: schemathesis reported failures or errors (exit $status)" >&2
    exit 1
fi
read -r chosen total <<<"${selected:-0 -1}"
if [ "$chosen" != "$total" ] || [ "${tested:-0}" != "$total" ]; then
    echo "schemathesis.sh: operations selected ${chosen}/${total}, tested ${tested:-0}: some were not tested" >&2
    exit 1
fi
echo "schemathesis.sh: no failures, all $total operations tested"
