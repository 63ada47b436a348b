#!/usr/bin/env bash
# Sets up what the tests need on a Debian machine (PostgreSQL and the Docker engine from
# Debian's packages, the sandbox test image) and runs the whole test suite.
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
# Sandbox tests must run against the engine; a missing one fails instead of skipping.
export VRE_TEST_REQUIRE_DOCKER=1

cargo test --workspace --locked "$@"
