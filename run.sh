#!/usr/bin/env bash
# btc-predictor: the two commands.
#   ./run.sh local   set up .venv, migrate, ingest market data if empty, train if no model, serve
#   ./run.sh test    set up .venv with dev,train,postgres extras; lint, type-check, test
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
  echo "==> ruff"
  "$bin/ruff" check src tests bench migrations
  echo "==> mypy --strict"
  "$bin/mypy"
  echo "==> pytest"
  "$bin/python" -m pytest "$@"
}

usage() {
  sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

verb=${1:-}
[ $# -gt 0 ] && shift
case "$verb" in
  local) cmd_local "$@" ;;
  test) cmd_test "$@" ;;
  *) usage ;;
esac
