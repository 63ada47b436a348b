#!/usr/bin/env bash
# Builds the minimal sandbox image the tests use, without a registry: Debian's busybox-static
# in an otherwise empty root file system (the equivalent of `FROM scratch`), imported as
# `vre-test/busybox:latest`. It has a non-root user (uid 65534) and the /vre mount points.
# Does nothing when the image exists and was built from the same busybox binary; a rebuild
# removes the image it replaces rather than leaving it dangling.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../dev/lib.sh"
tag=${1:-vre-test/busybox:latest}
need_packages busybox-static
recipe=$( { sha256sum /bin/busybox; sha256sum "$0"; } | sha256sum | cut -c1-16)
old=$(docker image inspect --format '{{.Id}} {{index .Config.Labels "vre.recipe"}}' "$tag" 2>/dev/null || true)
if [ "${old#* }" = "$recipe" ]; then
    echo "$tag ${old%% *}"
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,vre/work,vre/output,vre/ingress,vre/data}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/vre/work:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . |
    docker import --change 'CMD ["/bin/sh"]' --change 'USER 65534:65534' --change 'WORKDIR /vre/work' \
        --change 'ENV PATH=/bin' --change "LABEL vre.recipe=$recipe" - "$tag" >/dev/null
new=$(docker image inspect --format '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "${old%% *}" != "$new" ]; then
    docker image rm "${old%% *}" >/dev/null 2>&1 || true
fi
echo "$tag $new"
