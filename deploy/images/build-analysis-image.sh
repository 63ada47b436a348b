#!/usr/bin/env bash
# Builds a real analysis image without a registry: a minimal Debian (debootstrap) with Python,
# numpy and pandas from Debian's packages, imported as `vre/analysis-python:bookworm`. It runs
# as the sandbox user (uid 65534) and has the /vre mount points. Takes a few minutes.
# Usage: deploy/images/build-analysis-image.sh [tag]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../dev/lib.sh"
tag=${1:-vre/analysis-python:bookworm}
suite=${VRE_DEBIAN_SUITE:-bookworm}
mirror=${VRE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
need_packages debootstrap
root=$(mktemp -d)
trap 'as_root rm -rf "$root"' EXIT
as_root debootstrap --variant=minbase --include=python3,python3-numpy,python3-pandas,ca-certificates \
    "$suite" "$root" "$mirror"
as_root chroot "$root" sh -c 'apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*'
as_root mkdir -p "$root/vre/work" "$root/vre/output" "$root/vre/ingress" "$root/vre/data"
as_root tar --numeric-owner -C "$root" -cf - . |
    docker import --change 'USER 65534:65534' --change 'WORKDIR /vre/work' \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'CMD ["python3"]' - "$tag" >/dev/null
docker run --rm --network none "$tag" python3 -c 'import numpy, pandas; print("numpy", numpy.__version__, "pandas", pandas.__version__)'
echo "$tag $(docker image inspect --format '{{.Id}}' "$tag")"
