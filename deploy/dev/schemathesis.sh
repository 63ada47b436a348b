#!/usr/bin/env bash
# Tests the gateway against its own OpenAPI document with schemathesis, as a peer would: a fresh
# gateway on a free loopback port (fresh data dir, the local Docker engine when there is one),
# an admin token (also the analyst of one project, for uploads: see schemathesis.toml), then
# `st run` with its default checks and phases. Fails when schemathesis reports any failure or
# error, or leaves an operation untested.
#
#   deploy/dev/schemathesis.sh   (installs schemathesis 4.32.5 into target/schemathesis-venv)
#
# VRE_BIN=path/to/vre skips the build; extra arguments go to `st run` (e.g. --max-examples 20).
set -euo pipefail
cd "$(dirname "$0")/../.."

# schemathesis from its own venv (target/schemathesis-venv), made on first use: the version the
# checks were tuned against, whatever else the machine has.
st_version=4.32.5
venv=target/schemathesis-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$st_version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$st_version"
fi
st=$PWD/$venv/bin/st
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
# A project whose analyst the token is, for uploads (see schemathesis.toml). The VRE_ST_*
# values are for schemathesis only: `vre` would warn of variables it does not know.
st_project=st-project
"$vre" project create "$st_project" --title "schemathesis" --member root:analyst \
    --url "$url" --token "$token" --ca "$data/tls/ca.pem" >/dev/null

# A dataset registered with the example DMP by a steward of its institution (see
# schemathesis.toml), so its detail and DMP are answered and checked against the schema.
steward=$("$vre" token issue --sub st-steward --role steward --institution tohoku-u --data-dir "$data")
st_dataset=$("$vre" dataset register --dmp deploy/examples/dmp.json --json \
    --url "$url" --token "$steward" --ca "$data/tls/ca.pem" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

# An egress application and its sandbox (see schemathesis.toml), so the egress routes and the
# list of runs reach their logic and their answers are checked against the schema: on the local
# engine, a sandbox of a project of its own whose run wrote a small table, asked for by that
# project's analyst (not the token's subject, who reads it as an admin). Without an engine, the
# routes get ids that name nothing.
st_egress=app-none
st_sandbox=sb-none
if command -v docker >/dev/null && docker image inspect vre-test/busybox:latest >/dev/null 2>&1; then
    api() { # METHOD PATH [BODY] [TOKEN]: the answer's body; fails on an error status
        curl -sf --cacert "$data/tls/ca.pem" -X "$1" -H "Authorization: Bearer ${4:-$token}" \
            -H 'Content-Type: application/json' ${3:+-d "$3"} "$url$2"
    }
    field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
    op=$("$vre" token issue --sub st-operator --role operator --data-dir "$data")
    analyst=$("$vre" token issue --sub st-analyst --role analyst --data-dir "$data")
    "$vre" project create st-egress --title "schemathesis egress" --member st-analyst:analyst --commands any \
        --url "$url" --token "$token" --ca "$data/tls/ca.pem" >/dev/null
    api POST /api/v1/images '{"name": "vre-test/busybox:latest"}' "$op" >/dev/null
    sandbox=$(api POST /api/v1/sandboxes '{"project": "st-egress", "image": "vre-test/busybox:latest"}' "$analyst" | field id)
    st_sandbox=$sandbox
    run=$(api POST "/api/v1/sandboxes/$sandbox/runs" \
        '{"cmd": ["sh", "-c", "printf \"group,count\\nA,25\\n\" > /vre/output/counts.csv"]}' "$analyst" | field id)
    [ "$(api GET "/api/v1/runs/$run?wait=60" "" "$analyst" | field exit_code)" = 0 ] || { echo "schemathesis.sh: the seeding run failed" >&2; exit 1; }
    api PUT /api/v1/keys/me '{"recipient": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}' "$analyst" >/dev/null
    st_egress=$(api POST /api/v1/egress \
        "{\"sandbox\": \"$sandbox\", \"paths\": [\"counts.csv\"], \"justification\": \"seed\"}" "$analyst" | field id)
fi

set +e
(cd "$work" && VRE_ST_PROJECT=$st_project VRE_ST_EGRESS=$st_egress VRE_ST_DATASET=$st_dataset VRE_ST_SANDBOX=$st_sandbox "$st" --config-file "$OLDPWD/deploy/dev/schemathesis.toml" run "$url/openapi.json" --tls-verify "$data/tls/ca.pem" -H "Authorization: Bearer $token" \
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
