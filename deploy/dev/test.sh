#!/usr/bin/env bash
# Sets up what the tests need on a Debian machine (PostgreSQL and the Docker engine from
# Debian's packages, gVisor, the sandbox test image, the tools release packages are checked
# against) and runs the whole test suite: every test CI runs, none of them skipped.
# Usage: deploy/dev/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

start_postgres
# Storage tests must run on PostgreSQL too; a missing server fails instead of skipping.
export VRE_TEST_REQUIRE_POSTGRES=1

# gVisor (Debian's runsc), registered as the engine's `runsc` runtime when the engine starts.
need_packages runsc
bash deploy/docker/start-engine.sh
bash deploy/images/build-test-image.sh >/dev/null
# Sandbox tests must run against the engine, and the gVisor ones on runsc; a missing engine or
# runtime fails them instead of skipping.
export VRE_TEST_REQUIRE_DOCKER=1 VRE_TEST_REQUIRE_RUNSC=1
runtimes=$(docker info --format '{{json .Runtimes}}')
case "$runtimes" in
*'"runsc"'*) ;;
*)
    echo "test.sh: the running Docker engine has no runsc runtime: it was started before" \
        "runsc was installed or without deploy/docker/start-engine.sh; restart it with that" >&2
    exit 1
    ;;
esac

# Some tests need root (a file system mounted below a dataset, Docker engines of their own).
# Run as root, as CI is, they must run: not being root then fails them. Run as another user
# (this script uses sudo only to install and start services), they are skipped with a note,
# unless the caller sets VRE_TEST_REQUIRE_ROOT=1 itself, as .ci/run does.
if [ "$(id -u)" = 0 ]; then
    export VRE_TEST_REQUIRE_ROOT=1
elif [ "${VRE_TEST_REQUIRE_ROOT:-}" != 1 ]; then
    echo "test.sh: not root: the tests that need root are skipped (run as root to run them all)" >&2
fi

# Release packages are opened with the standard tools (age, GNU tar with zstd, sha256sum) and
# their metadata with the rocrate Python package; a missing one fails instead of skipping.
setup_release_tools
export VRE_TEST_REQUIRE_TOOLS=1

# The web pages are tested in a real browser (headless Chromium); a missing one fails.
setup_browser
export VRE_TEST_REQUIRE_BROWSER=1
# axe-core, run in those pages; with the browser required, a missing one fails too.
setup_axe

# The sign-in through an identity provider is tested against a real OpenID provider
# (oidc-provider on Node.js); a missing one fails.
setup_oidc_provider
export VRE_TEST_REQUIRE_OIDC=1

cargo test --workspace --locked "$@"
