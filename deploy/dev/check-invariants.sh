#!/usr/bin/env bash
# The architecture's invariants, checked mechanically (see ARCHITECTURE.md):
# - `policy` does no IO: it depends on no async runtime, database, HTTP or Docker crate; nor
#   does `payload-seal` (the quarantine's format: it reads and writes what it is handed).
# - only `sandbox-runner` (when present) depends on bollard.
# - the gateway's storage (`gateway/src/store/`) depends on no workflow module: not on the
#   services, ingress, sandboxes, the HTTP API or the background workers, which build on it.
# A cargo (or grep) that fails, or answers nothing, fails the check: it never reads as "no such
# dependency". deploy/dev/check-invariants-selftest.sh shows both, with a fake cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."

broken() {
    echo "check-invariants: $*; the invariants were not checked" >&2
    exit 2
}

# The workspace's packages; policy must be one of them.
meta=$(cargo metadata --no-deps --format-version 1) || broken "cargo metadata failed"
[ -n "$meta" ] || broken "cargo metadata answered nothing"
pkgs=$(python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"]))' <<<"$meta" 2>/dev/null) ||
    broken "cargo metadata's answer is not the JSON expected"
case " $pkgs " in
*" policy "*) ;;
*) broken "cargo metadata lists no package policy (only: $pkgs)" ;;
esac

# `cargo tree -p PKG ARGS`, which lists at least PKG itself.
tree() {
    local out
    out=$(cargo tree -p "$1" -e normal --prefix none "${@:2}") || broken "cargo tree -p $1 failed"
    grep -q "^$1 v" <<<"$out" || broken "cargo tree -p $1 does not list $1 itself"
    printf '%s\n' "$out"
}

fail=0
for pure in policy payload-seal; do
    case " $pkgs " in
    *" $pure "*) ;;
    *) continue ;;
    esac
    pure_deps=$(tree "$pure")
    for forbidden in tokio sqlx axum hyper reqwest bollard; do
        if grep -q "^$forbidden v" <<<"$pure_deps"; then
            echo "invariant broken: $pure depends on $forbidden" >&2
            fail=1
        fi
    done
done
for pkg in $pkgs; do
    [ "$pkg" = sandbox-runner ] && continue
    direct=$(tree "$pkg" --depth 1)
    if grep -q "^bollard v" <<<"$direct"; then
        echo "invariant broken: $pkg depends on bollard directly; only sandbox-runner speaks Docker" >&2
        fail=1
    fi
done
# grep exits 1 when nothing matches (the invariant holds) and 2 when it could not read.
status=0
found=$(grep -rnE 'crate::(\{([^}]*[ ,])?)?(service|ingress|sandboxes|api|workers)\b' gateway/src/store) || status=$?
case $status in
0)
    echo "invariant broken: the store uses a workflow module; storage types belong in gateway/src/store:" >&2
    echo "$found" >&2
    fail=1
    ;;
1) ;;
*) broken "grep over gateway/src/store failed" ;;
esac
[ "$fail" = 0 ] && echo "architecture invariants hold"
exit "$fail"
