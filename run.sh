#!/usr/bin/env bash
# btc-predictor: the two commands, and the Docker verbs.
#   ./run.sh local   set up .venv, migrate, ingest market data if empty, train if no model, serve
#   ./run.sh test    set up .venv with dev,train,postgres extras; lint, type-check, test
#   ./run.sh start [--scale api=N]   build and start the Compose stack (reads .env; see .env.example)
#   ./run.sh stop                    stop and remove the stack's containers (volumes are kept)
#   ./run.sh logs [SERVICE]          follow the logs (api, worker, postgres, gateway, grafana, ...)
#   ./run.sh clean [--yes]           stop the stack and DELETE its volumes (asks unless --yes)
#   ./run.sh deploy DOMAIN           the stack behind Traefik: API at https://DOMAIN,
#                                    /grafana and /prometheus (docker-compose.deploy.yml)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${BTCP_VENV:-.venv}

die() { echo "run.sh: $*" >&2; exit 2; }

python_bin() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$candidate"; return
    fi
  done
  die "Python 3.11 or newer is required"
}

ensure_venv() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$(python_bin)" -m venv "$VENV"
  fi
  local target="."
  [ -n "$extras" ] && target=".[$extras]"
  echo "==> installing btc-predictor $target"
  # torch is pinned (train extra) so pip never resolves an unpinned multi-GB CUDA build.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"
}

cmd_local() {
  local extras="train"
  case "${BTCP_DATABASE_URL:-}" in postgresql*) extras="train,postgres" ;; esac
  ensure_venv "$extras"
  local cli="$VENV/bin/btc-predictor"
  echo "==> migrating the database"
  "$cli" db upgrade
  echo "==> market data"
  "$cli" data bootstrap
  "$cli" data status
  echo "==> models"
  "$cli" models bootstrap
  local host=${BTCP_HOST:-127.0.0.1} port=${BTCP_PORT:-8000}
  cat <<MSG

Ready. Serving on http://$host:$port (API docs at /docs, dashboard at /ui); Ctrl-C stops.
In another terminal:
  curl http://$host:$port/predict
  .venv/bin/btc-predictor predict --asset BTC-USD --horizon 7   # forecast with intervals
  .venv/bin/btc-predictor backtest --asset BTC-USD --plot bt.png # walk-forward vs naive
MSG
  exec "$cli" serve --host "$host" --port "$port"
}

cmd_test() {
  ensure_venv "dev,train,postgres"
  local bin="$VENV/bin"
  local lint_paths=(src tests bench migrations)
  echo "==> ruff"
  "$bin/ruff" check "${lint_paths[@]}"
  "$bin/ruff" format --check "${lint_paths[@]}"
  echo "==> mypy --strict"
  "$bin/mypy"
  echo "==> pytest"
  "$bin/python" -m pytest "$@"
}

# --- Docker verbs ---------------------------------------------------------------------------
COMPOSE=()
BASE_FILE=docker-compose.yml
DEPLOY_FILE=docker-compose.deploy.yml
SECRETS="BTCP_API_KEY POSTGRES_PASSWORD GRAFANA_ADMIN_PASSWORD"

find_compose() {
  # The compose plugin (`docker compose`) when present, else the standalone docker-compose.
  if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  elif command -v docker >/dev/null 2>&1; then
    die "Docker Compose is missing: install the compose plugin (docker compose) or docker-compose"
  else
    die "docker is not installed or not on PATH: install Docker and its compose plugin (https://docs.docker.com/engine/install/)"
  fi
}

setting() {
  # The value Compose will see for $1: the environment wins over .env (like Compose itself).
  local name=$1 line value=""
  if [ -n "${!name+set}" ]; then
    printf '%s' "${!name}"; return
  fi
  [ -f .env ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    line=${line#export }
    case "$line" in "$name="*) value=${line#"$name="} ;; esac
  done < .env
  value=${value%"${value##*[![:space:]]}"}
  case "$value" in \'*\' | \"*\") value=${value:1:${#value}-2} ;; esac
  printf '%s' "$value"
}

require_settings() {
  # Compose would refuse too (${VAR:?}), but with a multi-line dump of the service's environment.
  local name
  for name in "$@"; do
    if [ -z "$(setting "$name")" ]; then
      if [ -f .env ]; then
        die "$name is not set: add it to .env (see .env.example) or export it"
      fi
      die "$name is not set and there is no .env: cp .env.example .env and fill in the secrets"
    fi
  done
}

compose() {
  "${COMPOSE[@]}" "$@"
}

published() {
  # A browser URL for a Compose `[address:]port` publish setting ($1, else the default $2).
  local value=${1:-$2}
  case "$value" in *:*) ;; *) value="localhost:$value" ;; esac
  value=${value/#127.0.0.1:/localhost:}
  printf 'http://%s' "${value/#0.0.0.0:/localhost:}"
}

cmd_start() {
  find_compose
  # shellcheck disable=SC2086
  require_settings $SECRETS
  compose -f "$BASE_FILE" up -d --build "$@"
  local api grafana prometheus alertmanager
  api=$(published "$(setting API_PUBLISH)" 127.0.0.1:8000)
  grafana=$(published "$(setting GRAFANA_PUBLISH)" 127.0.0.1:3000)
  prometheus=$(published "$(setting PROMETHEUS_PUBLISH)" 127.0.0.1:9090)
  alertmanager=$(published "$(setting ALERTMANAGER_PUBLISH)" 127.0.0.1:9093)
  local admin
  admin=$(setting GRAFANA_ADMIN_USER)
  cat <<MSG

Started (containers report healthy within about a minute: ${COMPOSE[*]} ps).
  API           $api        (docs $api/docs; every replica behind one port)
  Grafana       $grafana        (user ${admin:-admin}, password GRAFANA_ADMIN_PASSWORD)
  Prometheus    $prometheus
  Alertmanager  $alertmanager
On a fresh database the worker ingests market data and trains the default model by itself.
  ./run.sh logs worker          follow it
  ./run.sh start --scale api=3  three API replicas
  ./run.sh stop                 stop (data is kept); ./run.sh clean deletes it
MSG
}

cmd_stop() {
  find_compose
  # shellcheck disable=SC2086
  require_settings $SECRETS
  compose -f "$BASE_FILE" down "$@"
}

cmd_logs() {
  find_compose
  # shellcheck disable=SC2086
  require_settings $SECRETS
  compose -f "$BASE_FILE" logs -f --tail=200 "$@"
}

cmd_clean() {
  local yes=false arg answer
  for arg in "$@"; do
    case "$arg" in
      -y | --yes) yes=true ;;
      *) die "clean: unknown argument \`$arg\` (only --yes)" ;;
    esac
  done
  find_compose
  # shellcheck disable=SC2086
  require_settings $SECRETS
  if ! $yes; then
    # Never delete data on a non-interactive "yes" nobody typed (CI, pipes, cron).
    [ -t 0 ] || die "clean deletes the database, metrics and dashboards volumes: stdin is not a terminal, so confirm with ./run.sh clean --yes"
    read -r -p "Delete the stack's volumes (PostgreSQL data with every model, Prometheus, Grafana)? Type yes: " answer
    [ "$answer" = yes ] || die "clean cancelled: nothing deleted"
  fi
  compose -f "$BASE_FILE" down -v --remove-orphans
}

valid_domain() {
  # A DNS name: dot-separated labels of letters, digits and inner hyphens; a letter-only TLD.
  local domain=$1
  [ ${#domain} -le 253 ] &&
    [[ $domain =~ ^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$ ]]
}

cmd_deploy() {
  local given=${1:-} domain
  [ -n "$given" ] || die "deploy needs a domain: ./run.sh deploy btc.example.com"
  shift
  domain=${given,,}
  valid_domain "$domain" ||
    die "\`$given\` is not a domain name (expected e.g. btc.example.com: no scheme, port or path)"
  find_compose
  export DOMAIN=$domain
  # shellcheck disable=SC2086
  require_settings $SECRETS PROMETHEUS_BASIC_AUTH
  local network
  network=$(setting TRAEFIK_NETWORK)
  network=${network:-dokploy-network}
  if command -v docker >/dev/null 2>&1 && ! docker network inspect "$network" >/dev/null 2>&1; then
    die "the Traefik network \`$network\` does not exist: start Traefik (e.g. Dokploy) first or set TRAEFIK_NETWORK"
  fi
  compose -f "$BASE_FILE" -f "$DEPLOY_FILE" up -d --build "$@"
  cat <<MSG

Deployed behind Traefik (network $network):
  API         https://$domain        (docs https://$domain/docs)
  Grafana     https://$domain/grafana
  Prometheus  https://$domain/prometheus   (basic auth: PROMETHEUS_BASIC_AUTH)
MSG
}

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

verb=${1:-}
[ $# -gt 0 ] && shift
case "$verb" in
  local) cmd_local "$@" ;;
  test) cmd_test "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  logs) cmd_logs "$@" ;;
  clean) cmd_clean "$@" ;;
  deploy) cmd_deploy "$@" ;;
  *) usage ;;
esac
