#!/usr/bin/env bash
# Starts a Docker engine for development and CI with the hardened settings in daemon.json:
# no bridge network, no iptables, no IP forwarding (sandboxes only ever use network `none`),
# no-new-privileges by default, capped local logs. Installs Debian's docker.io if needed.
# Idempotent: does nothing when an engine already answers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../dev/lib.sh"

if docker version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    exit 0
fi
need_packages docker.io
log=${VRE_DOCKERD_LOG:-/var/log/vre-dockerd.log}
# gVisor, when installed (Debian's runsc), as the optional `runsc` runtime of sandbox.runtime.
runtimes=""
if [ -x /usr/bin/runsc ]; then
    runtimes="--add-runtime 'runsc=$here/runsc'"
fi
as_root sh -c "nohup dockerd --config-file '$here/daemon.json' $runtimes >'$log' 2>&1 &"
for _ in $(seq 1 60); do
    if as_root docker info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
echo "the Docker engine did not start; see $log" >&2
tail -20 "$log" >&2 || true
exit 1
