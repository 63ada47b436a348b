# bench/lib.sh: what the benchmark scripts share (sourced, not run): logging, timing and
# statistics, the process figures of /proc, building the binary, and starting a `vre server`
# with a project. Each script sets REPO and WORK (its scratch directory) before it calls these.

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Every named command is on the PATH, or the script stops saying so (HINT: how to get them).
need() {
    local hint=$1 cmd
    shift
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null || die "$cmd is needed ($hint)"
    done
}

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# MiB (rounded) of a number of bytes.
mib() { awk -v n="$1" 'BEGIN { printf "%.0f", n / 1048576 }'; }
# MiB/s for BYTES moved in SECONDS.
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / 1048576 / s }'; }
# The median of the arguments (numbers).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%s", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
file_bytes() { stat -c %s "$1"; }
# Wall time of a command (its output dropped), in seconds.
time_cmd() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    elapsed "$t0" "$t1"
}

# Peak and current resident set (VmHWM, VmRSS) of a process, in KiB.
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The CPU a process used between two cpu_ticks readings, as a percentage of SECONDS of wall
# time (200% = both cores of a two-core machine).
cpu_pct() { awk -v c=$(( $2 - $1 )) -v hz="$(getconf CLK_TCK)" -v t="$3" 'BEGIN { printf "%.0f", 100 * c / hz / t }'; }

# Builds target/PROFILE/vre (release unless PROFILE=debug) and sets VRE to it; with BENCH_VRE
# set, uses that binary as it is instead (e.g. a copy of an earlier build, to compare).
build_vre() {
    local profile=${1:-release}
    if [[ -n "${BENCH_VRE:-}" ]]; then
        [[ -x "$BENCH_VRE" ]] || die "BENCH_VRE ($BENCH_VRE) is not an executable"
        VRE=$BENCH_VRE
        log "using $VRE as it is"
        return
    fi
    log "building the $profile binary"
    if [[ "$profile" == release ]]; then
        (cd "$REPO" && cargo build --release -q -p gateway --bin vre)
    else
        (cd "$REPO" && cargo build -q -p gateway --bin vre)
    fi
    VRE="$REPO/target/$profile/vre"
}

# The gateway: GW_PID while it runs, its data dir $WORK/data.
GW_PID=""

# Starts `vre server` on a fresh data dir ($WORK/data) and a free loopback port, with the TOML
# file GW_CONFIG when that is set; sets GW_PID, GW_URL, GW_CA, ADMIN_TOKEN and ANA_TOKEN, and
# creates the project "bench" with the analyst "ana" (PROJECT_EXTRA: more JSON members of the
# new project, e.g. '"commands":"any"').
start_gateway() {
    mkdir -p "$WORK/data"
    "$VRE" server --data-dir "$WORK/data" --listen 127.0.0.1:0 ${GW_CONFIG:+--config "$GW_CONFIG"} \
        >"$WORK/server.out" 2>"$WORK/server.err" &
    GW_PID=$!
    local i
    for i in $(seq 1 300); do
        if grep -q '^CA certificate: ' "$WORK/server.out" 2>/dev/null; then break; fi
        kill -0 "$GW_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; die "the gateway did not start"; }
        sleep 0.1
    done
    GW_URL=$(sed -n 's/^VRE Gateway listening on \(https:[^ ]*\).*/\1/p' "$WORK/server.out")
    GW_CA=$(sed -n 's/^CA certificate: //p' "$WORK/server.out")
    [[ -n "$GW_URL" && -s "$GW_CA" ]] || { cat "$WORK/server.out" "$WORK/server.err" >&2; die "no URL/CA from the gateway"; }

    ADMIN_TOKEN=$(issue_token bench-admin admin)
    ANA_TOKEN=$(issue_token ana analyst)
    api POST /api/v1/projects "$ADMIN_TOKEN" \
        "{\"id\":\"bench\",\"title\":\"Bench\",\"members\":[{\"subject\":\"ana\",\"role\":\"analyst\"}]${PROJECT_EXTRA:+,$PROJECT_EXTRA}}" \
        >/dev/null || die "cannot create the project"
}

# A token of the running gateway for SUBJECT with ROLE.
issue_token() { "$VRE" token issue --sub "$1" --role "$2" --data-dir "$WORK/data"; }

# A JSON request to the gateway: api METHOD PATH TOKEN [BODY]; prints the answer's body, and
# fails (after logging it) on a status of 400 or more.
api() {
    local method=$1 path=$2 token=$3 body=${4-}
    local args=(--cacert "$GW_CA" -sS --fail-with-body -X "$method" -H "Authorization: Bearer $token")
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' -d "$body")
    local out
    if ! out=$(curl "${args[@]}" "$GW_URL$path"); then
        log "$method $path failed: $(head -c 600 <<<"$out")"
        return 1
    fi
    printf '%s' "$out"
}

stop_gateway() {
    if [[ -n "$GW_PID" ]]; then
        kill -TERM "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
        GW_PID=""
    fi
    rm -rf "$WORK/data"
}
