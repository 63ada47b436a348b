#!/usr/bin/env bash
# Shows that deploy/dev/check-invariants.sh cannot pass by accident: with a fake `cargo` first
# on the PATH it must fail when cargo fails or answers nothing, and must find a forbidden
# dependency that cargo reports. Each case prints what the check said.
set -euo pipefail
cd "$(dirname "$0")/../.."
real_cargo=$(command -v cargo)
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
cat >"$fake/cargo" <<'EOF'
#!/bin/sh
# A cargo that breaks as $FAKE_CARGO says; otherwise the real one.
case "$FAKE_CARGO:$1" in
broken:*) echo "fake cargo: broken" >&2; exit 1 ;;
silent:*) exit 0 ;;
tree-broken:tree) echo "fake cargo: tree broken" >&2; exit 101 ;;
policy-uses-tokio:tree)
    "$REAL_CARGO" "$@" || exit
    case " $* " in *" -p policy "*) echo "tokio v1.0.0" ;; esac
    exit 0 ;;
esac
exec "$REAL_CARGO" "$@"
EOF
chmod +x "$fake/cargo"

fail=0
# expect CASE CODE TEXT: the check, with cargo broken as CASE, exits with CODE saying TEXT.
expect() {
    local out code=0
    out=$(FAKE_CARGO=$1 REAL_CARGO=$real_cargo PATH="$fake:$PATH" \
        bash deploy/dev/check-invariants.sh 2>&1) || code=$?
    printf '%s:\n%s\n(exit %s)\n\n' "$1" "$(sed 's/^/  /' <<<"$out")" "$code"
    if [ "$code" != "$2" ] || ! grep -qF "$3" <<<"$out"; then
        echo "check-invariants-selftest: with cargo $1 the check should exit $2 saying '$3'" >&2
        fail=1
    fi
}
expect broken 2 "cargo metadata failed"
expect silent 2 "cargo metadata answered nothing"
expect tree-broken 2 "cargo tree -p policy failed"
expect policy-uses-tokio 1 "invariant broken: policy depends on tokio"
[ "$fail" = 0 ] && echo "check-invariants-selftest: the check fails when cargo does, and finds what it reports"
exit "$fail"
