#!/usr/bin/env bash
# Sets up what the tests need on a Debian machine (PostgreSQL from Debian's packages) and runs
# the whole test suite. Usage: deploy/dev/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

VRE_TEST_POSTGRES_URL=$(start_postgres)
export VRE_TEST_POSTGRES_URL
# Storage tests must run on PostgreSQL too; a missing server fails instead of skipping.
export VRE_TEST_REQUIRE_POSTGRES=1

cargo test --workspace --locked "$@"
