#!/usr/bin/env bash
#
# bench/ingress.sh: how fast the gateway ingests archives, and how much memory it needs.
#
# WHAT IT MEASURES
#   For each test archive, the wall time of `POST /api/v1/ingress` (curl streaming the file over
#   HTTPS on loopback to a release build of `vre server`, until the 201 receipt), next to what
#   the same machine does with the same bytes without the gateway:
#     - `openssl dgst -sha256 FILE`                      (one SHA-256 pass over the upload)
#     - `zstd -dc FILE | openssl dgst -sha256`           (.tar.zst only: decompress + hash)
#     - `dd if=FILE of=DATA_DIR/copy conv=fsync`          (write the upload durably, as the
#                                                           gateway's store worker must)
#   and the gateway's peak resident memory (VmHWM of its process). The gateway is restarted with
#   a fresh data dir for every archive, so each peak belongs to one archive size.
#   Every measurement is repeated REPS times (default 3); the table shows medians. Throughputs
#   are MiB of the archive FILE (the bytes sent) per second, in every column.
#
#   Archives (generated once into the cache, reused afterwards):
#     random-<N>M.tar       GNU tar of ~256 files of pseudo-random bytes (AES-CTR keystream)
#     random-<N>M.tar.zst   the same, zstd -3 -T0 (random data does not shrink: this exercises
#                           the zstd framing but decompression is almost a copy)
#     text-<N>M.tar.zst     GNU tar of ~256 generated CSV files, zstd -3 -T0 (~4:1), so
#                           decompression is really exercised; <N> is the size of the tar inside
#
#   Targets (from the issue), printed as PASS/MISS:
#     - a plain tar ingests at >= half the speed of `openssl dgst -sha256` on the same file;
#     - the gateway's peak RSS stays < 64 MiB and does not grow with archive size.
#   The script exits 0 whether the targets are met or not: it is a benchmark, not a test.
#
# HOW TO RUN
#   bench/ingress.sh                      # from anywhere; builds target/release/vre first
#   REPS=5 SIZES_MIB="1024 4096" bench/ingress.sh
#   SIZES_MIB=64 REPS=1 bench/ingress.sh  # a quick smoke run
#   TMPDIR=/dev/shm bench/ingress.sh      # gateway data dir on tmpfs: takes the disk (and the
#                                         # fsync of every upload) out of the figures
#
#   Environment:
#     SIZES_MIB   archive sizes in MiB (default "1024 4096")
#     REPS        repetitions of every measurement (default 3)
#     SETS        which archive kinds (default "random-tar random-zst text-zst")
#     BENCH_CACHE where the archives are kept (default ${XDG_CACHE_HOME:-~/.cache}/vre-ingress-bench);
#                 must be outside the repository. Delete it to regenerate the archives.
#   Disk: with the defaults the cache holds ~11.5 GiB, and a run needs room for one more copy of
#   the largest archive (the gateway's stored blob) plus the dd copy: ~20 GiB in all.
#   Needs: cargo, curl, openssl, zstd, GNU tar, jq, mawk/gawk, coreutils. Loopback traffic only.
#
# The results are also written as TSV to $BENCH_CACHE/results-<date>.tsv.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES_MIB=${SIZES_MIB:-"1024 4096"}
REPS=${REPS:-3}
SETS=${SETS:-"random-tar random-zst text-zst"}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vre-ingress-bench}
FILES_PER_ARCHIVE=256
RSS_LIMIT_MIB=64
# "Does not grow with archive size": the largest archive's peak may exceed the smallest's by at
# most this much (allocator noise), per archive kind.
RSS_GROWTH_TOLERANCE_MIB=8

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

need "apt-get install -y curl openssl zstd tar jq" cargo curl openssl zstd tar jq awk dd sha256sum split xargs
tar --version | head -1 | grep -q 'GNU tar' || die "GNU tar is needed"

mkdir -p "$BENCH_CACHE"
BENCH_CACHE=$(cd "$BENCH_CACHE" && pwd)
case "$BENCH_CACHE/" in
    "$REPO"/*) die "BENCH_CACHE ($BENCH_CACHE) is inside the repository; put it elsewhere" ;;
esac

# Scratch space for this run (gateway data dirs, responses): always removed on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vre-ingress-bench.XXXXXX")
cleanup() {
    stop_gateway
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Test archives
# ---------------------------------------------------------------------------------------------

# A directory of FILES_PER_ARCHIVE files of pseudo-random bytes, BYTES in all. AES-CTR over
# /dev/zero is a fast, seeded generator (GB/s), much cheaper than /dev/urandom.
make_random_tree() {
    local dir=$1 bytes=$2 seed=$3
    local per=$(( bytes / FILES_PER_ARCHIVE ))
    mkdir -p "$dir/data"
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$seed" -in /dev/zero 2>/dev/null \
        | head -c $(( per * FILES_PER_ARCHIVE )) \
        | split -b "$per" -d -a 4 --additional-suffix=.bin - "$dir/data/part-"
}

# A directory of FILES_PER_ARCHIVE CSV files, BYTES in all: dates, site codes, decimals and
# notes, compressing about 4:1 with zstd -3. One awk per file, on every core.
make_text_tree() {
    local dir=$1 bytes=$2 seed=$3
    local per=$(( bytes / FILES_PER_ARCHIVE ))
    mkdir -p "$dir/data"
    seq 0 $(( FILES_PER_ARCHIVE - 1 )) | xargs -P "$(nproc)" -I{} awk -v seed="$seed{}" -v n="$per" \
        -v out="$dir/data/table-{}.csv" 'BEGIN {
            srand(seed); b = 0; i = 0
            h = "id,date,site,value,flag,note"; print h > out; b += length(h) + 1
            while (b < n) {
                i++
                line = sprintf("%d,2023-%02d-%02d,site%03d,%.4f,%s,sample %d of batch %d",
                    i, 1 + int(rand() * 12), 1 + int(rand() * 28), int(rand() * 500),
                    rand() * 1000, (rand() < 0.1 ? "Y" : "N"), i, int(i / 1000))
                print line > out; b += length(line) + 1
            }
        }'
}

# A GNU tar (default format and 10 KiB records) of the tree, with fixed owners and times, plus a
# small README. (Without the README the 4 GiB text tar is an exact multiple of 128 KiB long, and
# the gateway wrongly refuses such a tar.zst as truncated: see BENCHMARKS.md. This script
# measures speed, so it steps around that bug; ensure_archive warns if it ever hits it again.)
tar_tree() {
    printf 'VRE Gateway ingress benchmark archive (bench/ingress.sh). Generated; not real data.\n' > "$1/README.txt"
    tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - README.txt data
}

# Writes the archive KIND of SIZE MiB into the cache unless it is already there, with two
# sidecars: .sha256 (of the file) and .unpacked (bytes of the tar inside). Prints its path.
ensure_archive() {
    local kind=$1 size=$2 f tree
    local bytes=$(( size * 1048576 ))
    case "$kind" in
        random-tar) f="$BENCH_CACHE/random-${size}M.tar" ;;
        random-zst) f="$BENCH_CACHE/random-${size}M.tar.zst" ;;
        text-zst)   f="$BENCH_CACHE/text-${size}M.tar.zst" ;;
        *) die "unknown archive kind $kind" ;;
    esac
    if [[ -s "$f" && -s "$f.sha256" && -s "$f.unpacked" ]]; then
        echo "$f"
        return
    fi
    log "generating $f (once; kept in the cache)"
    tree="$BENCH_CACHE/tree.tmp"
    rm -rf "$tree" "$f.tmp"
    case "$kind" in
        random-tar)
            make_random_tree "$tree" "$bytes" "$size"
            tar_tree "$tree" > "$f.tmp"
            ;;
        random-zst)
            # The same bytes as random-<size>M.tar, compressed.
            local plain
            plain=$(ensure_archive random-tar "$size")
            zstd -3 -T0 -q -c "$plain" > "$f.tmp"
            ;;
        text-zst)
            make_text_tree "$tree" "$bytes" "$size"
            tar_tree "$tree" | zstd -3 -T0 -q -c > "$f.tmp"
            ;;
    esac
    rm -rf "$tree"
    sha256sum "$f.tmp" | awk '{ print $1 }' > "$f.sha256"
    if [[ "$f" == *.zst ]]; then
        zstd -dc -q "$f.tmp" | wc -c > "$f.unpacked"
    else
        file_bytes "$f.tmp" > "$f.unpacked"
    fi
    if (( $(cat "$f.unpacked") % 131072 == 0 )); then
        log "note: the tar in $f is a multiple of 128 KiB long; the gateway may refuse it as truncated"
    fi
    mv "$f.tmp" "$f"
    echo "$f"
}

# ---------------------------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------------------------

# Uploads FILE as NAME; checks the 201 and the receipt's archive.sha256 against WANT_SHA.
# Prints the wall time in seconds, or "refused:<status>:<error code>" when the gateway says no
# (reported in the table rather than stopping the benchmark).
upload() {
    local file=$1 name=$2 want_sha=$3 t0 t1 code got
    t0=$(now)
    # -T streams the file (--data-binary @file would read it all into memory first); an empty
    # Expect header stops curl waiting for "100 Continue".
    code=$(curl --cacert "$GW_CA" -sS -X POST -T "$file" -o "$WORK/receipt.json" -w '%{http_code}' \
        -H "Authorization: Bearer $ANA_TOKEN" -H 'Content-Type: application/x-tar' -H 'Expect:' \
        "$GW_URL/api/v1/ingress?project=bench&name=$name") || die "curl failed uploading $file"
    t1=$(now)
    if [[ "$code" != 201 ]]; then
        log "upload of $file answered $code: $(head -c 300 "$WORK/receipt.json")"
        echo "refused:$code:$(jq -r '.code // "?"' "$WORK/receipt.json" 2>/dev/null || echo '?')"
        return
    fi
    got=$(jq -r '.archive.sha256' "$WORK/receipt.json")
    [[ "$got" == "$want_sha" ]] || die "archive.sha256 of $file is $got, sha256sum says $want_sha"
    elapsed "$t0" "$t1"
}

hash_file() { openssl dgst -sha256 "$1"; }
unzstd_hash() { zstd -dc -q "$1" | openssl dgst -sha256; }
durable_copy() { dd if="$1" of="$WORK/data/copy" bs=1M conv=fsync status=none; }
# Removes the dd copy and lets the disk settle (the file system may discard the freed blocks in
# the background), so that the next measurement starts on a quiet disk. Not timed.
settle() { rm -f "$WORK/data/copy"; sync; sleep 2; }

# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------

build_vre release

# Disk: the archives not yet cached, plus room for a stored blob and a dd copy of the largest.
need_mib=0 largest=0
for size in $SIZES_MIB; do
    (( size > largest )) && largest=$size
    for kind in $SETS; do
        case "$kind" in
            random-tar) [[ -s "$BENCH_CACHE/random-${size}M.tar" ]] || need_mib=$(( need_mib + size * 11 / 10 )) ;;
            random-zst) [[ -s "$BENCH_CACHE/random-${size}M.tar.zst" ]] || need_mib=$(( need_mib + size * 11 / 10 )) ;;
            text-zst) [[ -s "$BENCH_CACHE/text-${size}M.tar.zst" ]] || need_mib=$(( need_mib + size * 14 / 10 )) ;;
        esac
    done
done
need_mib=$(( need_mib + 2 * largest * 11 / 10 + 1024 ))
avail_mib=$(df -Pm "$BENCH_CACHE" | awk 'NR == 2 { print $4 }')
log "disk: ~${need_mib} MiB needed, ${avail_mib} MiB free on $(df -P "$BENCH_CACHE" | awk 'NR == 2 { print $6 }')"
(( avail_mib > need_mib )) || die "not enough disk space"

archives=()
for kind in $SETS; do
    for size in $SIZES_MIB; do
        archives+=("$(ensure_archive "$kind" "$size")")
    done
done

RESULTS="$BENCH_CACHE/results-$(date +%Y%m%d-%H%M%S).tsv"
printf 'archive\tfile_bytes\tunpacked_bytes\tgateway_s\topenssl_s\tzstd_openssl_s\tdd_fsync_s\tgateway_cpu_pct\tidle_rss_kib\tpeak_rss_kib\n' > "$RESULTS"

for f in "${archives[@]}"; do
    name=$(basename "$f")
    bytes=$(file_bytes "$f")
    unpacked=$(cat "$f.unpacked")
    want_sha=$(cat "$f.sha256")
    log "$name: $(mib "$bytes") MiB file, $(mib "$unpacked") MiB tar; $REPS runs of each measurement"

    start_gateway
    idle_rss=$(peak_rss_kib "$GW_PID")
    gw=() ossl=() zo=() dds=() cpu=() refused=""
    for rep in $(seq 1 "$REPS"); do
        # openssl first, so the file is in the page cache for everybody after it.
        ossl+=("$(time_cmd hash_file "$f")")
        if [[ "$f" == *.zst ]]; then zo+=("$(time_cmd unzstd_hash "$f")"); fi
        c0=$(cpu_ticks "$GW_PID")
        t=$(upload "$f" "$name-$rep" "$want_sha")
        c1=$(cpu_ticks "$GW_PID")
        if [[ "$t" == refused:* ]]; then
            refused=$t
            break
        fi
        gw+=("$t")
        cpu+=("$(cpu_pct "$c0" "$c1" "$t")")
        dds+=("$(time_cmd durable_copy "$f")")
        settle
        zo_note=""; [[ ${#zo[@]} -gt 0 ]] && zo_note=", zstd|openssl ${zo[-1]}s"
        log "  run $rep: gateway ${t}s ($(rate "$bytes" "$t") MiB/s, cpu ${cpu[-1]}%), openssl ${ossl[-1]}s$zo_note, dd ${dds[-1]}s, peak RSS $(( $(peak_rss_kib "$GW_PID") / 1024 )) MiB"
    done
    peak_rss=$(peak_rss_kib "$GW_PID")
    stop_gateway

    if [[ -n "$refused" ]]; then
        printf '%s\t%s\t%s\t%s\t-\t-\t-\t-\t%s\t%s\n' "$name" "$bytes" "$unpacked" "$refused" "$idle_rss" "$peak_rss" >> "$RESULTS"
        continue
    fi
    zo_s=-
    [[ ${#zo[@]} -gt 0 ]] && zo_s=$(median "${zo[@]}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$bytes" "$unpacked" "$(median "${gw[@]}")" \
        "$(median "${ossl[@]}")" "$zo_s" "$(median "${dds[@]}")" "$(median "${cpu[@]}")" "$idle_rss" "$peak_rss" >> "$RESULTS"
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

echo
echo "VRE Gateway ingress benchmark: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
     "sha_ni $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no); median of $REPS runs; MiB/s of the archive file;"
echo "gateway data dir on $(df -PT "$WORK" | awk 'NR == 2 { print $2 " (" $7 ")" }')"
echo
awk -F'\t' -v rss_limit="$RSS_LIMIT_MIB" -v tol="$RSS_GROWTH_TOLERANCE_MIB" '
    function rate(bytes, s) { return (s == "-") ? "-" : sprintf("%.0f", bytes / 1048576 / s) }
    function line(a, b, c, d, e, f, g, h, i, j, k) {
        printf "%-22s %8s %8s %8s %8s %9s %9s %7s %7s %8s %8s\n", a, b, c, d, e, f, g, h, i, j, k
    }
    BEGIN {
        line("archive", "file", "tar", "gateway", "openssl", "zstd|ssl", "dd+fsync", "gw/ref", "gw cpu", "idle RSS", "peak RSS")
        line("", "MiB", "MiB", "MiB/s", "MiB/s", "MiB/s", "MiB/s", "", "", "MiB", "MiB")
    }
    NR == 1 { next }
    $4 ~ /^refused/ {
        line($1, sprintf("%.0f", $2 / 1048576), sprintf("%.0f", $3 / 1048576), "REFUSED", "-", "-", "-", "-", "-",
             sprintf("%.1f", $9 / 1024), sprintf("%.1f", $10 / 1024))
        split($4, why, ":")
        refusals = refusals sprintf("  FAIL %s: the gateway refused a valid archive (HTTP %s, %s)\n", $1, why[2], why[3])
        next
    }
    {
        # The reference for the ratio: openssl for a plain tar, zstd|openssl for a .tar.zst.
        plain = ($6 == "-")
        ratio = (plain ? $5 : $6) / $4
        peak = $10 / 1024
        line($1, sprintf("%.0f", $2 / 1048576), sprintf("%.0f", $3 / 1048576), rate($2, $4), rate($2, $5),
             rate($2, $6), rate($2, $7), sprintf("%.2f", ratio), sprintf("%.0f%%", $8), sprintf("%.1f", $9 / 1024), sprintf("%.1f", peak))
        if (plain) targets = targets sprintf("  %-4s %s ingests at %.2f x openssl dgst -sha256 (target >= 0.50)\n", (ratio >= 0.5 ? "PASS" : "MISS"), $1, ratio)
        kind = $1; sub(/-[0-9]+M\./, ".", kind); size = $3 + 0
        if (!(kind in minsize) || size < minsize[kind]) { minsize[kind] = size; minpeak[kind] = peak }
        if (!(kind in maxsize) || size > maxsize[kind]) { maxsize[kind] = size; maxpeak[kind] = peak }
        if (peak > worst) worst = peak
    }
    END {
        print ""
        print "gw/ref: gateway speed / openssl (plain tar) or / zstd|openssl (tar.zst), >1 means faster. gw cpu: CPU time"
        print "of the gateway process during the upload / wall time (200% = both cores). dd+fsync: writing the file durably."
        print ""
        print "Targets:"
        printf "%s%s", refusals, targets
        printf "  %-4s peak RSS %.1f MiB at worst (target < %d MiB)\n", (worst < rss_limit ? "PASS" : "MISS"), worst, rss_limit
        for (k in minsize) if (maxsize[k] > minsize[k]) {
            g = maxpeak[k] - minpeak[k]
            printf "  %-4s peak RSS of *%s: %.1f MiB at %.0f MiB of tar, %.1f MiB at %.0f MiB (no growth; tolerance %d MiB)\n", (g <= tol ? "PASS" : "MISS"), k, minpeak[k], minsize[k] / 1048576, maxpeak[k], maxsize[k] / 1048576, tol
        }
    }' "$RESULTS"
echo
echo "Raw figures (TSV): $RESULTS"
exit 0
