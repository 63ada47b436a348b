# Shared helpers for the development scripts: install Debian packages and start services.
# Sourced, not run.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
need_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$apt_updated" = 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    echo "installing: ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Starts the distribution's PostgreSQL cluster, makes a superuser `vre` (password `vre`) for
# the tests and exports the admin URL they use as VRE_TEST_POSTGRES_URL. Everything it and the
# tools it calls print goes to stderr (apt and pg_ctlcluster talk on stdout).
start_postgres() {
    _start_postgres >&2
    export VRE_TEST_POSTGRES_URL="postgres://vre:vre@127.0.0.1:5432/postgres"
}

_start_postgres() {
    need_packages postgresql
    local version
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
        as_root pg_createcluster "$version" main >/dev/null
    fi
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
        as_root pg_ctlcluster "$version" main start
    fi
    for _ in $(seq 1 30); do
        as_root su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
        sleep 1
    done
    as_root su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'vre'\"" | grep -q 1 ||
        as_root su postgres -c "psql -qc \"CREATE ROLE vre LOGIN SUPERUSER PASSWORD 'vre'\""
}

# The tools release packages are checked against (gateway/src/release/tests_interop.rs):
# Debian's age and zstd, and the `rocrate` Python package in a venv under target/, whose
# Python is exported as VRE_TEST_ROCRATE_PYTHON. Quiet on stdout, like start_postgres.
setup_release_tools() {
    _setup_release_tools >&2
    export VRE_TEST_ROCRATE_PYTHON="$PWD/target/rocrate-venv/bin/python"
}

# Pinned: the version the metadata was last checked with; move it on purpose.
ROCRATE_VERSION=0.16.0

_setup_release_tools() {
    need_packages age zstd
    local venv=target/rocrate-venv
    if "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('rocrate') != '$ROCRATE_VERSION')" 2>/dev/null; then
        return 0
    fi
    if ! python3 -m venv "$venv" 2>/dev/null; then
        need_packages python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "rocrate==$ROCRATE_VERSION"
}

# The browser the web pages are tested in: Debian's headless Chromium and its WebDriver, with a
# Japanese font for the Japanese pages' screenshots.
setup_browser() {
    need_packages chromium chromium-driver fonts-ipafont-gothic >&2
}

# axe-core, the accessibility engine the browser tests inject into the pages, from the npm
# registry at the version `deploy/dev/axe/package-lock.json` pins (with its checksum), into
# `deploy/dev/axe/node_modules`. Does nothing when that version is there already.
setup_axe() {
    _setup_axe >&2
}

_setup_axe() {
    local dir=deploy/dev/axe
    local want
    command -v npm >/dev/null || need_packages nodejs npm
    want=$(node -p "require('./$dir/package-lock.json').packages['node_modules/axe-core'].version")
    if [ -f "$dir/node_modules/axe-core/axe.min.js" ] &&
        [ "$(node -p "require('./$dir/node_modules/axe-core/package.json').version")" = "$want" ]; then
        return 0
    fi
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

# The OpenID provider the pages' sign-in is tested against: oidc-provider from npm (the
# version pinned in deploy/dev/oidc-provider/package-lock.json) on the machine's Node.js.
# Installs once; later calls only compare the lock file with the one installed.
setup_oidc_provider() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        need_packages nodejs npm >&2
    fi
    local dir=deploy/dev/oidc-provider
    if cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"; then
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    cp "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"
}
