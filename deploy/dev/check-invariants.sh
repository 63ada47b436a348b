#!/usr/bin/env bash
# The architecture's invariants, checked mechanically (see ARCHITECTURE.md):
# - `policy` does no IO: it depends on no async runtime, database, HTTP or Docker crate.
# - only `sandbox-runner` (when present) depends on bollard.
# - the gateway's storage (`gateway/src/store/`) depends on no workflow module: not on ingress,
#   sandboxes, the HTTP API or the background workers, which all build on it.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
for forbidden in tokio sqlx axum hyper reqwest bollard; do
    if cargo tree -p policy -e normal --prefix none 2>/dev/null | grep -q "^$forbidden v"; then
        echo "invariant broken: policy depends on $forbidden" >&2
        fail=1
    fi
done
for pkg in $(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"]))'); do
    [ "$pkg" = sandbox-runner ] && continue
    if cargo tree -p "$pkg" -e normal --depth 1 --prefix none 2>/dev/null | grep -q "^bollard v"; then
        echo "invariant broken: $pkg depends on bollard directly; only sandbox-runner speaks Docker" >&2
        fail=1
    fi
done
if found=$(grep -rnE 'crate::(\{([^}]*[ ,])?)?(ingress|sandboxes|api|workers)\b' gateway/src/store); then
    echo "invariant broken: the store uses a workflow module; storage types belong in gateway/src/store:" >&2
    echo "$found" >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "architecture invariants hold"
exit "$fail"
