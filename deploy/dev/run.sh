#!/usr/bin/env bash
# Builds and runs the gateway with its embedded defaults: data in ./vre-data, SQLite, a
# generated signing key and TLS certificate, listening on https://127.0.0.1:8443; and brings up
# the local Docker engine sandboxes run on, with a minimal image to try them with
# (`vre image allow vre-test/busybox:latest --interpreter sh`).
# It also puts the `vre` it built in ~/.cargo/bin (where `cargo install` puts programs, on the
# PATH of rustup's installs; BIN_DIR=DIR puts it elsewhere), so that another terminal can use
# the client; it says so when that directory is not on the PATH.
# Extra arguments go to `vre server` (e.g. --listen 127.0.0.1:9443).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/docker/start-engine.sh
bash deploy/images/build-test-image.sh >/dev/null
cargo build --release --locked -p gateway --bin vre

bin_dir=${BIN_DIR:-${CARGO_HOME:-$HOME/.cargo}/bin}
mkdir -p "$bin_dir"
# A copy, renamed into place: a `vre` running from there goes on undisturbed.
install -m 0755 target/release/vre "$bin_dir/.vre.new"
mv -f "$bin_dir/.vre.new" "$bin_dir/vre"
echo "run.sh: installed $bin_dir/vre" >&2
case ":$PATH:" in
*":$bin_dir:"*)
    found=$(command -v vre)
    if [ "$found" != "$bin_dir/vre" ]; then
        echo "run.sh: but \`vre\` is $found, earlier on the PATH" >&2
    fi
    ;;
*) echo "run.sh: $bin_dir is not on the PATH: export PATH=\"$bin_dir:\$PATH\"" >&2 ;;
esac

exec ./target/release/vre server "$@"
