#!/usr/bin/env bash
#
# bench/egress.sh: how long results take from an egress request to a downloadable release,
# beside the same bytes taken out of the engine and packed by hand.
#
# WHAT IT MEASURES
#   A release build of `vre server` (fresh data dir, loopback HTTPS) with a resource class "big"
#   (4 GiB output quota) and the command policy `any`; the analyst "ana" registers an age
#   recipient (`age-keygen`) and one run of the test image fills the sandbox's output folder
#   (not timed) with OUTPUT_MIB of results (default 1024):
#     big/part-N.bin      BIG_FILES (3) files, together 90% of it (3 x ~307 MiB): random bytes
#                         (/dev/urandom), the worst case for the package's zstd (it cannot
#                         shrink them: this measures zstd's cost, not its gain) and for the
#                         disk. Random bytes are binary, which the checks fail by type; each
#                         carries an exception, as an analyst's model weights would. The checks
#                         decide binary on the first 64 KiB and read nothing more of it.
#     small/t-NNNN.csv    SMALL_FILES (2000) aggregate tables of ~50 KiB, the other 10%, that
#                         pass the checks (a group, a year, a mean, a count >= 10): these do
#                         exercise the table checks, and the per-file costs (a tar header and
#                         a zstd frame in the payload, a row each).
#   Each repetition has outputs of its own: before it, a run (not timed) removes the last
#   repetition's and writes new ones (other random bytes, other tables), so no repetition asks
#   the gateway for content it already holds (a duplicate is dropped and its copy unlinked, which
#   is a cost of its own: SAME_OUTPUTS=1 keeps the first run's outputs for every repetition, to
#   measure that case). Then, REPS times (default 3), both ways of getting the same folder out:
#     gateway   request  POST /api/v1/egress {sandbox, paths: [big, small], exceptions} until
#                        its 201: the engine's archive API through a helper container, the
#                        checks and the quarantine (every file hashed, written as the tar,
#                        zstd and age payload of its release, one fsync);
#               votes    the two reviewers' approvals (two POSTs; the second queues the build);
#               build    from the second approval until the application is `released` (polled
#                        every 0.1 s): every chunk of the payload authenticated and every file
#                        re-hashed, the header and metadata written around it, fsync, committed;
#               total    from the request until `released`: request + votes + build;
#               download GET /api/v1/applications/{id}/release into a file (not in the total).
#     baseline  cp       `docker cp` of /vre/output out of a container (never started) that
#                        mounts the same output volume read-only, into a local folder;
#               pack     `tar -C folder -cf - . | zstd -3 -T0 | age -r RECIPIENT > file`;
#               total    cp + pack. The baseline neither hashes, checks nor fsyncs anything.
#   The table shows medians, side by side, and ratios baseline / gateway (> 1: the gateway is
#   faster). Target: the gateway's total at least as fast as the baseline's (1.00); the aim
#   after that is 1.5. Every release is checked once (not timed): it decrypts with the
#   identity, and holds every file with SHA256SUMS that `sha256sum -c` accepts.
#   The script exits 0 whether the target is met or not: it is a benchmark, not a test.
#
# HOW TO RUN
#   bench/egress.sh                             # builds target/release/vre first
#   OUTPUT_MIB=128 SMALL_FILES=200 REPS=1 bench/egress.sh   # a quick smoke run
#   TMPDIR=/dev/shm bench/egress.sh             # gateway data dir and baseline on tmpfs
#
#   Environment: OUTPUT_MIB, BIG_FILES, SMALL_FILES, REPS, PROFILE (release|debug),
#   ZSTD_BASELINE (the baseline's zstd flags, default "-3 -T0"), SAME_OUTPUTS (1: one run's
#   outputs for every repetition).
#   Disk: the output volume (OUTPUT_MIB), the gateway's quarantine and releases (about
#   2 x REPS x OUTPUT_MIB), the baseline's copy and package (2 x OUTPUT_MIB): ~6 GiB with
#   the defaults. Everything is removed on exit: the data dir, the sandbox's volumes and
#   containers (the gateway removes the sandbox), the baseline's files.
#   Needs: cargo, curl, jq, docker (the engine and the test image vre-test/busybox:latest),
#   age and age-keygen, zstd, GNU tar, sha256sum. Loopback traffic only; runs have network none.
#   BENCH_VRE=PATH uses that binary as it is instead of building (e.g. an earlier build).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTPUT_MIB=${OUTPUT_MIB:-1024}
BIG_FILES=${BIG_FILES:-3}
SMALL_FILES=${SMALL_FILES:-2000}
REPS=${REPS:-3}
PROFILE=${PROFILE:-release}
ZSTD_BASELINE=${ZSTD_BASELINE:-"-3 -T0"}
SAME_OUTPUTS=${SAME_OUTPUTS:-0}
IMAGE=vre-test/busybox:latest

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

need "apt-get install -y curl jq age zstd tar" cargo curl jq docker age age-keygen zstd tar sha256sum
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "the test image $IMAGE is not in the engine"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vre-egress-bench.XXXXXX")
SANDBOX=""
INSTANCE=""
BASE_CTR=""
cleanup() {
    [[ -n "$BASE_CTR" ]] && docker rm -f "$BASE_CTR" >/dev/null 2>&1 || true
    if [[ -n "$SANDBOX" && -n "$GW_PID" ]]; then
        api DELETE "/api/v1/sandboxes/$SANDBOX" "$ANA_TOKEN" >/dev/null 2>&1 || true
        # The removal is done in the background: wait (bounded) for its volumes to go.
        for _ in $(seq 1 100); do
            docker volume ls -q | grep -q "^vre-$SANDBOX-" || break
            sleep 0.2
        done
    fi
    stop_gateway
    if [[ -n "$INSTANCE" ]]; then
        # Whatever this gateway left (its launcher volume; the sandbox's if its removal failed).
        docker ps -aq --filter "label=vre.instance=$INSTANCE" | xargs -r docker rm -f >/dev/null 2>&1 || true
        docker volume ls -q --filter "label=vre.instance=$INSTANCE" | xargs -r docker volume rm >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# The gateway, a sandbox and its outputs
# ---------------------------------------------------------------------------------------------

build_vre "$PROFILE"

cat > "$WORK/config.toml" <<'EOF'
[sandbox]
commands = "any"

[sandbox.classes.big]
cpus = 2.0
memory_bytes = 2147483648
pids = 256
tmpfs_bytes = 268435456
max_run_secs = 3600
output_quota_bytes = 4294967296
work_quota_bytes = 4294967296
log_max_bytes = 8388608
EOF
GW_CONFIG="$WORK/config.toml" PROJECT_EXTRA='"commands":"any"' start_gateway
log "gateway $GW_URL (pid $GW_PID, $PROFILE build)"

age-keygen -o "$WORK/identity.txt" 2>/dev/null
RECIPIENT=$(age-keygen -y "$WORK/identity.txt")
api PUT /api/v1/keys/me "$ANA_TOKEN" "{\"recipient\":\"$RECIPIENT\"}" >/dev/null || die "cannot register the recipient"
OP_TOKEN=$(issue_token bench-op operator)
api POST /api/v1/images "$OP_TOKEN" "{\"name\":\"$IMAGE\"}" >/dev/null || die "cannot allow the image"
SANDBOX=$(api POST /api/v1/sandboxes "$ANA_TOKEN" "{\"project\":\"bench\",\"image\":\"$IMAGE\",\"class\":\"big\"}" | jq -r .id)
[[ -n "$SANDBOX" && "$SANDBOX" != null ]] || die "cannot make the sandbox"
INSTANCE=$(docker volume inspect -f '{{index .Labels "vre.instance"}}' "vre-$SANDBOX-output")

# The outputs, written by a run (repetition SEED's own: other random bytes, other tables). The
# tables: per file one header and rows of a region, a year, a sex, a mean and a count of 10 to
# 999 (aggregates that pass), ~SMALL_BYTES each.
total=$(( OUTPUT_MIB * 1048576 ))
big_bytes=$(( total * 9 / 10 / BIG_FILES ))
small_bytes=$(( total / 10 / SMALL_FILES ))
write_outputs() {
    local seed=$1 script body run r
    script="set -e; cd /vre/output; rm -rf big small; mkdir big small
i=1; while [ \$i -le $BIG_FILES ]; do
    dd if=/dev/urandom of=big/part-\$i.bin bs=65536 count=$(( big_bytes / 65536 )) 2>/dev/null; i=\$((i + 1)); done
awk -v files=$SMALL_FILES -v n=$small_bytes 'BEGIN {
    srand($seed)
    for (f = 1; f <= files; f++) {
        out = sprintf(\"small/t-%04d.csv\", f); b = 0
        print \"region,year,sex,mean_value,count\" > out
        while (b < n) {
            line = sprintf(\"R%d,%d,%s,%.3f,%d\", int(rand() * 12), 2000 + int(rand() * 24), (rand() < 0.5 ? \"F\" : \"M\"), rand() * 100, 10 + int(rand() * 990))
            print line > out; b += length(line) + 1
        }
        close(out)
    }
}'"
    body=$(jq -cn --arg s "$script" '{cmd: ["sh", "-c", $s], timeout_secs: 3000}')
    run=$(api POST "/api/v1/sandboxes/$SANDBOX/runs" "$ANA_TOKEN" "$body" | jq -r .id)
    while :; do
        r=$(api GET "/api/v1/runs/$run?wait=30" "$ANA_TOKEN")
        [[ $(jq -r .state <<<"$r") == finished ]] && break
    done
    [[ $(jq -r .exit_code <<<"$r") == 0 ]] || die "the run that writes the outputs failed: $r"
}
log "sandbox $SANDBOX: a run per repetition writes $OUTPUT_MIB MiB of outputs ($BIG_FILES x $(mib "$big_bytes") MiB random, $SMALL_FILES x $(( small_bytes / 1024 )) KiB CSV)$([[ $SAME_OUTPUTS == 1 ]] && echo ', the same for every repetition')"
write_outputs 1

# The baseline's container: never started, the output volume mounted read-only.
BASE_CTR=$(docker create --network none -v "vre-$SANDBOX-output:/vre/output:ro" "$IMAGE" true)
docker cp "$BASE_CTR:/vre/output" - | tar -tvf - > "$WORK/listing.txt"
files=$(grep -c '^-' "$WORK/listing.txt")
bytes=$(awk '/^-/ { s += $3 } END { printf "%d", s }' "$WORK/listing.txt")
log "outputs: $files files, $(mib "$bytes") MiB"

exceptions=$(awk '/^-/ && $6 ~ /\/big\// { sub(/^output\//, "", $6); print $6 }' "$WORK/listing.txt" \
    | jq -R . | jq -cs 'map({key: ., value: "model weights: binary, reviewed by hand"}) | from_entries')
REV1=$(issue_token bench-rev1 reviewer)
REV2=$(issue_token bench-rev2 reviewer)

# ---------------------------------------------------------------------------------------------
# The two ways out
# ---------------------------------------------------------------------------------------------

# Removes what a measurement wrote and lets the disk settle, so the next starts on a quiet
# disk. Not timed.
settle() { rm -rf "$WORK/cp" "$WORK/base.age" "$WORK/release.age"; sync; sleep 2; }

base_cp() { mkdir "$WORK/cp" && docker cp -q "$BASE_CTR:/vre/output" "$WORK/cp/"; }
# shellcheck disable=SC2086
base_pack() { tar -C "$WORK/cp/output" -cf - . | zstd -q $ZSTD_BASELINE | age -r "$RECIPIENT" > "$WORK/base.age"; }

# The gateway's way, once: sets G_REQ, G_VOTES, G_BUILD, G_TOTAL, G_DL, G_CPU_REQ, G_CPU_BUILD
# and G_SIZE (bytes of the release).
gateway_once() {
    local rep=$1 body t0 t1 t2 t3 t4 c0 c1 c2 c3 id st
    body=$(jq -cn --arg s "$SANDBOX" --argjson e "$exceptions" \
        '{sandbox: $s, paths: ["big", "small"], justification: "egress benchmark", exceptions: $e}')
    c0=$(cpu_ticks "$GW_PID")
    t0=$(now)
    id=$(api POST /api/v1/egress "$ANA_TOKEN" "$body" | jq -r .id) || die "the egress request failed"
    t1=$(now)
    c1=$(cpu_ticks "$GW_PID")
    api POST "/api/v1/applications/$id/decisions" "$REV1" '{"decision":"approve","comment":"fine"}' >/dev/null
    api POST "/api/v1/applications/$id/decisions" "$REV2" '{"decision":"approve","comment":"fine"}' >/dev/null
    t2=$(now)
    c2=$(cpu_ticks "$GW_PID")
    while :; do
        st=$(api GET "/api/v1/applications/$id/egress" "$REV1" | jq -r '.application.state + " " + (.release.state // "")')
        case "$st" in
            released*) break ;;
            *refused*|rejected*|revoked*) die "the release of $id is $st" ;;
        esac
        sleep 0.1
    done
    t3=$(now)
    c3=$(cpu_ticks "$GW_PID")
    curl --cacert "$GW_CA" -sS --fail -o "$WORK/release.age" -H "Authorization: Bearer $ANA_TOKEN" \
        "$GW_URL/api/v1/applications/$id/release" || die "the download of $id failed"
    t4=$(now)
    G_REQ=$(elapsed "$t0" "$t1") G_VOTES=$(elapsed "$t1" "$t2") G_BUILD=$(elapsed "$t2" "$t3")
    G_TOTAL=$(elapsed "$t0" "$t3") G_DL=$(elapsed "$t3" "$t4")
    G_CPU_REQ=$(cpu_pct "$c0" "$c1" "$G_REQ") G_CPU_BUILD=$(cpu_pct "$c2" "$c3" "$G_BUILD")
    G_SIZE=$(file_bytes "$WORK/release.age")
    if [[ $rep == 1 ]]; then
        # Not timed: the release opens with the identity and its sums hold.
        mkdir "$WORK/open"
        age -d -i "$WORK/identity.txt" "$WORK/release.age" | zstd -dq | tar -C "$WORK/open" -xf -
        local n
        n=$(find "$WORK/open/files" -type f | wc -l)
        [[ $n == "$files" ]] || die "the release holds $n files, not $files"
        (cd "$WORK/open" && sha256sum -c --quiet SHA256SUMS) || die "SHA256SUMS of the release do not hold"
        rm -rf "$WORK/open"
        log "  release of $id checked: $n files, SHA256SUMS hold"
    fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="$WORK/results.tsv"
printf 'rep\tload1\tg_req\tg_votes\tg_build\tg_total\tg_dl\tg_cpu_req\tg_cpu_build\tg_size\tb_cp\tb_pack\tb_total\tb_size\n' > "$RESULTS"
sync; sleep 2
for rep in $(seq 1 "$REPS"); do
    if [[ $rep -gt 1 && $SAME_OUTPUTS != 1 ]]; then
        write_outputs "$rep"
        sync; sleep 2
    fi
    load1=$(cut -d' ' -f1 /proc/loadavg)
    b_cp=$(time_cmd base_cp)
    b_pack=$(time_cmd base_pack)
    b_size=$(file_bytes "$WORK/base.age")
    settle
    gateway_once "$rep"
    settle
    b_total=$(awk -v a="$b_cp" -v b="$b_pack" 'BEGIN { printf "%.3f", a + b }')
    log "run $rep: gateway request ${G_REQ}s (cpu $G_CPU_REQ%), votes ${G_VOTES}s, build ${G_BUILD}s (cpu $G_CPU_BUILD%), total ${G_TOTAL}s, download ${G_DL}s; baseline cp ${b_cp}s, pack ${b_pack}s, total ${b_total}s"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$load1" "$G_REQ" "$G_VOTES" "$G_BUILD" "$G_TOTAL" "$G_DL" \
        "$G_CPU_REQ" "$G_CPU_BUILD" "$G_SIZE" "$b_cp" "$b_pack" "$b_total" "$b_size" >> "$RESULTS"
done
peak_rss=$(peak_rss_kib "$GW_PID")

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

col() { awk -F'\t' -v c="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next } { print $k }' "$RESULTS"; }
med() { median $(col "$1"); }
ratio() { awk -v b="$1" -v g="$2" 'BEGIN { printf "%.2f", b / g }'; }

g_req=$(med g_req) g_votes=$(med g_votes) g_build=$(med g_build) g_total=$(med g_total) g_dl=$(med g_dl)
b_cp=$(med b_cp) b_pack=$(med b_pack) b_total=$(med b_total)
echo
echo "VRE Gateway egress benchmark: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo);" \
     "median of $REPS runs; $PROFILE build"
echo "load average (1, 5, 15 min) $LOAD_BEFORE before the runs, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo "outputs: $([[ $SAME_OUTPUTS == 1 ]] && echo "one run's for every repetition (later ones are duplicates)" || echo "each repetition its own")"
echo "outputs: $files files, $(mib "$bytes") MiB ($BIG_FILES random with exceptions, $SMALL_FILES CSV);" \
     "data dir on $(df -PT "$WORK" | awk 'NR == 2 { print $2 " (" $7 ")" }')"
echo
printf '%-34s %9s %8s   %-34s %9s %8s   %7s\n' "gateway" "s" "MiB/s" "baseline" "s" "MiB/s" "base/gw"
printf '%-34s %9s %8s   %-34s %9s %8s   %7s\n' \
    "request (copy, check, quarantine)" "$g_req" "$(rate "$bytes" "$g_req")" "docker cp" "$b_cp" "$(rate "$bytes" "$b_cp")" "$(ratio "$b_cp" "$g_req")"
printf '%-34s %9s %8s   %-34s %9s %8s   %7s\n' \
    "build (re-hash, tar, zstd, age)" "$g_build" "$(rate "$bytes" "$g_build")" "tar | zstd $ZSTD_BASELINE | age" "$b_pack" "$(rate "$bytes" "$b_pack")" "$(ratio "$b_pack" "$g_build")"
printf '%-34s %9s %8s   %-34s %9s %8s   %7s\n' "two approvals" "$g_votes" "" "" "" "" ""
printf '%-34s %9s %8s   %-34s %9s %8s   %7s\n' \
    "total: request to released" "$g_total" "$(rate "$bytes" "$g_total")" "total: cp + pack" "$b_total" "$(rate "$bytes" "$b_total")" "$(ratio "$b_total" "$g_total")"
printf '%-34s %9s %8s\n' "download (not in the total)" "$g_dl" "$(rate "$(med g_size)" "$g_dl")"
echo
echo "base/gw: baseline time / gateway time, > 1 means the gateway is faster. Package sizes: gateway" \
     "$(mib "$(med g_size)") MiB, baseline $(mib "$(med b_size)") MiB."
echo "Gateway CPU (both cores = 200%): request $(med g_cpu_req)%, build $(med g_cpu_build)%; peak RSS $(( peak_rss / 1024 )) MiB."
echo
echo "Target:"
awk -v r="$(ratio "$b_total" "$g_total")" 'BEGIN {
    printf "  %-4s request to release at %.2f x the speed of docker cp + tar | zstd | age (target >= 1.00, aim 1.50)\n", (r >= 1 ? "PASS" : "MISS"), r }'
echo
echo "Per run (s):"
column -t -s $'\t' "$RESULTS"
exit 0
