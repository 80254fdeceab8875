#!/usr/bin/env bash
# Prepares a machine for Touchpoint's local runs and tests. Run it once; it is
# idempotent and takes a second when everything is already there.
#
#   - a C toolchain and OpenSSL's headers, for librdkafka (TLS and SASL)
#   - Tansu 0.6.0, the Kafka-protocol broker (cargo install, ~10 min the first time)
#   - cargo-nextest, the test runner
#   - cargo-fuzz, for the fuzz targets in fuzz/
#   - poppler-utils, with which the fax tests read PDFs
#   - PostgreSQL answering on DATABASE_URL's server (started, or installed from
#     Debian's postgresql package and started, when nothing answers)
#   - for the desk's browser tests: Debian's chromium and chromium-driver, and
#     (npm ci) oidc-provider and axe-core in services/desk/browser
#
#   - the deployment-file checkers (kubernetes-validate, hadolint, the Compose
#     Specification's schema) in a virtualenv under ~/.cache/touchpoint, and
#     kubectl for `kubectl kustomize`
#
# protoc needs no install: the proto crate uses a vendored compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/touchpoint}"

say() { echo "setup: $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root for: $*"; exit 1
    fi
}

apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- build tools -------------------------------------------------------------
if ! command -v cc >/dev/null || ! command -v make >/dev/null || ! command -v pkg-config >/dev/null \
    || ! pkg-config --exists openssl; then
    say "installing the C toolchain and OpenSSL headers librdkafka builds with"
    apt_install build-essential pkg-config libssl-dev
fi

# --- Tansu -------------------------------------------------------------------
tansu_bin="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
if [ -x "$tansu_bin" ] && "$tansu_bin" --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
    say "tansu $TANSU_VERSION present"
else
    say "installing tansu $TANSU_VERSION (about 10 minutes on 2 cores)"
    # --locked is required: without it tansu does not compile. A storage feature
    # is required too, or the broker refuses to start.
    cargo install tansu --locked --version "$TANSU_VERSION" --features libsql,dynostore
fi

# --- poppler: the fax tests read the PDFs dispatch sends with a reader that is
# not ours --------------------------------------------------------------------
if command -v pdftotext >/dev/null && command -v pdfinfo >/dev/null; then
    say "poppler-utils present"
else
    say "installing poppler-utils"
    apt_install poppler-utils
fi

# --- cargo-nextest: the test runner (one process per test, so each test that
# needs a broker gets its own) -------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
    say "cargo-nextest present"
else
    say "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

# --- cargo-fuzz: the fuzz targets in fuzz/ (the test suite makes a short run) -
if cargo fuzz --version 2>/dev/null | grep -q "cargo-fuzz 0.13"; then
    say "cargo-fuzz present"
else
    say "installing cargo-fuzz (about a minute)"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

# --- PostgreSQL --------------------------------------------------------------
# host and port of DATABASE_URL (postgres://user[:pw]@host[:port]/db?...)
authority="${DATABASE_URL#*://}"; authority="${authority%%/*}"; authority="${authority##*@}"
pg_host="${authority%%:*}"; pg_port="${authority##*:}"
[ "$pg_port" = "$authority" ] && pg_port=5432

pg_answers() { command -v pg_isready >/dev/null && pg_isready -q -h "$pg_host" -p "$pg_port"; }

if pg_answers; then
    say "postgresql answers on $pg_host:$pg_port"
else
    case "$pg_host" in
        127.0.0.1|localhost|::1) ;;
        *) say "nothing answers on $pg_host:$pg_port and it is not this machine"; exit 1 ;;
    esac
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        say "installing Debian's postgresql"
        apt_install postgresql
    fi
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
        as_root pg_createcluster "$version" main --port "$pg_port" >/dev/null
    fi
    # Local development and CI only: let the postgres user in over loopback
    # without a password, as DATABASE_URL's default expects.
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q "touchpoint-local" "$hba"; then
        as_root sed -i "1i host all postgres 127.0.0.1/32 trust # touchpoint-local\nhost all postgres ::1/128 trust # touchpoint-local" "$hba"
    fi
    say "starting postgresql $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do pg_answers && break; sleep 0.5; done
    pg_answers || { say "postgresql did not start on $pg_host:$pg_port"; exit 1; }
    say "postgresql answers on $pg_host:$pg_port"
fi
# --- deployment-file checkers: the test of deploy/ and k8s/ validates them with
# these (deploy/check/validate.py) --------------------------------------------
# The desk's browser tests: Debian's Chromium driven through its ChromeDriver
# (never a downloaded browser), and from npm a real OpenID provider and axe-core,
# pinned by services/desk/browser/package-lock.json.
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    say "chromium and chromedriver present"
else
    say "installing Debian's chromium and chromium-driver"
    apt_install chromium chromium-driver
fi
if ! command -v npm >/dev/null; then
    say "installing node and npm"
    apt_install nodejs npm
fi
desk_npm=services/desk/browser
if cmp -s "$desk_npm/package-lock.json" "$desk_npm/node_modules/.touchpoint-lock" 2>/dev/null; then
    say "the desk's npm packages present"
else
    say "installing the desk's npm packages (oidc-provider, axe-core)"
    npm ci --prefix "$desk_npm" --no-audit --no-fund --loglevel=error >/dev/null
    cp "$desk_npm/package-lock.json" "$desk_npm/node_modules/.touchpoint-lock"
fi

check_venv="${TOUCHPOINT_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/touchpoint/check-venv}"
check_stamp="$check_venv/requirements.txt"
if [ -x "$check_venv/bin/python" ] && cmp -s "$check_stamp" deploy/check/requirements.txt; then
    say "deployment checkers present"
else
    say "installing the deployment checkers into $check_venv"
    python3 -m venv "$check_venv"
    "$check_venv/bin/pip" install -q -r deploy/check/requirements.txt
    # Only for the Compose Specification's JSON schema it ships; none of its
    # dependencies are needed for that.
    "$check_venv/bin/pip" install -q --no-deps docker-compose==1.29.2
    cp deploy/check/requirements.txt "$check_stamp"
fi
if command -v kubectl >/dev/null; then
    say "kubectl present"
else
    # kubectl is not in Debian's or PyPI's registries; the k8s test says so.
    say "kubectl is missing: the k8s/ test needs it for 'kubectl kustomize'"
fi
say "ready"
