#!/usr/bin/env bash
#
# bench/limits.sh: what a hostile client can take from the gateway: memory with oversized JSON
# bodies, and connections held open without a word.
#
# WHAT IT MEASURES
#   A `vre server` (fresh data dir, default settings but for what is named below) on loopback
#   HTTPS, a project "bench" with the analyst "ana", and then:
#   1. Memory. PARALLEL clients (default 16) each POST a JSON body of BODY_MIB MiB (default 16)
#      to /api/v1/applications with ana's token, all at once: a round with the length declared
#      (curl sends the whole body, no `Expect: 100-continue`), then a round sent chunked. The
#      gateway's peak resident memory (VmHWM of its process) after start and after the rounds,
#      and the answers' statuses. Target: the peak stays under 64 MiB.
#   2. Silent connections. IDLE_CONNS TLS connections (default 1000) are opened (handshake
#      done) and send nothing. Each one's time from its handshake to the gateway closing it is
#      recorded, and while they are all open a normal request (GET /healthz, and an authenticated
#      GET /api/v1/projects) must succeed. Reported: how many were closed within
#      server.idle_timeout_secs (30 by default; a silent connection actually meets the 10 s
#      header-read timeout first), the median and the slowest close, the normal request's
#      status and time. Target: all closed on time, the normal request served.
#   The script exits 0 whether the targets are met or not: it is a benchmark, not a test.
#
# HOW TO RUN
#   bench/limits.sh                         # builds target/release/vre first
#   PROFILE=debug bench/limits.sh           # the debug build (no release build needed)
#   IDLE_CONNS=200 PARALLEL=4 bench/limits.sh
#
#   Environment: PROFILE (release|debug), PARALLEL, BODY_MIB, IDLE_CONNS.
#   Needs: cargo, curl, python3, awk, coreutils. Loopback traffic only; everything it writes is
#   in a temporary directory removed on exit.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${PROFILE:-release}
PARALLEL=${PARALLEL:-16}
BODY_MIB=${BODY_MIB:-16}
IDLE_CONNS=${IDLE_CONNS:-1000}
RSS_LIMIT_MIB=64
IDLE_TIMEOUT_SECS=30

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

need "apt-get install -y curl python3" cargo curl python3 awk

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vre-limits-bench.XXXXXX")
cleanup() {
    stop_gateway
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# KiB as MiB with one decimal.
mib_of_kib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

build_vre "$PROFILE"
start_gateway
ANA=$ANA_TOKEN
start_rss=$(rss_kib "$GW_PID")
start_peak=$(peak_rss_kib "$GW_PID")

# ---------------------------------------------------------------------------------------------
# 1. Oversized JSON bodies
# ---------------------------------------------------------------------------------------------

python3 - "$WORK/body.json" "$BODY_MIB" <<'EOF'
import sys
path, mib = sys.argv[1], int(sys.argv[2])
head = b'{"kind":"access","project":"bench","title":"Big","description":"'
with open(path, "wb") as f:
    f.write(head)
    f.write(b"a" * (mib * 1048576 - len(head) - 2))
    f.write(b'"}')
EOF

# One round: PARALLEL posts at once; prints their statuses, counted ("413 x16").
round() {
    local framing=$1 i
    for i in $(seq 1 "$PARALLEL"); do
        # -T streams the file; an empty Expect header makes curl send it without waiting.
        curl --cacert "$GW_CA" -sS -o /dev/null -w '%{http_code}\n' -X POST -T "$WORK/body.json" \
            -H "Authorization: Bearer $ANA" -H 'Content-Type: application/json' -H 'Expect:' \
            ${framing:+-H "$framing"} "$GW_URL/api/v1/applications" 2>/dev/null || echo "curl-failed" &
    done | sort | uniq -c | awk '{ printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1 } END { print "" }'
    wait
}
log "round 1: $PARALLEL x $BODY_MIB MiB, length declared"
declared=$(round "")
log "  answers: $declared; peak RSS now $(mib_of_kib "$(peak_rss_kib "$GW_PID")") MiB"
log "round 2: $PARALLEL x $BODY_MIB MiB, chunked"
chunked=$(round "Transfer-Encoding: chunked")
log "  answers: $chunked; peak RSS now $(mib_of_kib "$(peak_rss_kib "$GW_PID")") MiB"
body_peak=$(peak_rss_kib "$GW_PID")

# ---------------------------------------------------------------------------------------------
# 2. Silent connections
# ---------------------------------------------------------------------------------------------

log "opening $IDLE_CONNS silent TLS connections"
python3 - "$GW_URL" "$GW_CA" "$IDLE_CONNS" "$IDLE_TIMEOUT_SECS" "$ANA" >"$WORK/idle.txt" <<'EOF'
import asyncio, ssl, statistics, subprocess, sys, time, urllib.parse

url, ca, n, idle, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
ctx = ssl.create_default_context(cafile=ca)

async def silent():
    """Opens a connection, completes TLS, sends nothing: seconds until the gateway closes it."""
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(reader.read(1), timeout=idle + 30)
        took = time.monotonic() - t0
    except asyncio.TimeoutError:
        took = None
    except (ConnectionError, ssl.SSLError):
        took = time.monotonic() - t0
    writer.close()
    return took

def normal():
    """A normal request while the silent ones are held: curl's status and time."""
    out = subprocess.run(["curl", "--cacert", ca, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                          "-H", f"Authorization: Bearer {token}", f"{url}/api/v1/projects"],
                         capture_output=True, text=True)
    health = subprocess.run(["curl", "--cacert", ca, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                             f"{url}/healthz"], capture_output=True, text=True)
    return out.stdout.strip() or "failed", health.stdout.strip() or "failed"

async def main():
    opened = []
    for i in range(0, n, 100):  # in batches, so that handshakes do not time out in the backlog
        opened += [asyncio.create_task(silent()) for _ in range(min(100, n - i))]
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    served, health = await asyncio.to_thread(normal)
    took = await asyncio.gather(*opened, return_exceptions=True)
    failed = [t for t in took if isinstance(t, BaseException)]
    times = [t for t in took if isinstance(t, float)]
    on_time = [t for t in times if t <= idle]
    print(f"opened {n - len(failed)}")
    print(f"failed_to_open {len(failed)}")
    print(f"closed_on_time {len(on_time)}")
    print(f"still_open {sum(1 for t in took if t is None)}")
    print(f"median_close_s {statistics.median(times):.2f}" if times else "median_close_s -")
    print(f"max_close_s {max(times):.2f}" if times else "max_close_s -")
    print(f"normal_request {served}")
    print(f"healthz {health}")

asyncio.run(main())
EOF
idle_peak=$(peak_rss_kib "$GW_PID")
get() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "$WORK/idle.txt"; }

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

echo
echo "VRE Gateway limits benchmark ($PROFILE build): $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo
echo "1. $PARALLEL parallel JSON bodies of $BODY_MIB MiB on POST /api/v1/applications"
echo "   RSS after start:               $(mib_of_kib "$start_rss") MiB (peak $(mib_of_kib "$start_peak") MiB)"
echo "   answers, length declared:      $declared"
echo "   answers, chunked:              $chunked"
echo "   peak RSS after both rounds:    $(mib_of_kib "$body_peak") MiB"
echo
echo "2. $IDLE_CONNS silent TLS connections (server.idle_timeout_secs = $IDLE_TIMEOUT_SECS, header_read_timeout_secs = 10)"
echo "   opened:                        $(get opened) (failed to open: $(get failed_to_open))"
echo "   closed within ${IDLE_TIMEOUT_SECS} s:              $(get closed_on_time); still open after $((IDLE_TIMEOUT_SECS + 30)) s: $(get still_open)"
echo "   time to close, median / max:   $(get median_close_s) s / $(get max_close_s) s"
echo "   normal request while held:     GET /api/v1/projects $(get normal_request) s; GET /healthz $(get healthz)"
echo "   peak RSS after:                $(mib_of_kib "$idle_peak") MiB"
echo
echo "Targets:"
awk -v p="$(mib_of_kib "$body_peak")" -v l="$RSS_LIMIT_MIB" 'BEGIN {
    printf "  %-4s peak RSS %.1f MiB under oversized bodies (target < %d MiB)\n", (p < l ? "PASS" : "MISS"), p, l }'
closed=$(get closed_on_time); opened=$(get opened); served=$(get normal_request)
if [[ "$closed" == "$IDLE_CONNS" && "$opened" == "$IDLE_CONNS" && "$served" == 200* ]]; then verdict=PASS; else verdict=MISS; fi
echo "  $verdict $closed of $IDLE_CONNS silent connections closed within ${IDLE_TIMEOUT_SECS} s, a normal request answered ${served%% *}"
