# shellcheck shell=bash
# Shared paths, settings and helpers for the dev scripts. Sourced, not run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEV_DIR="$REPO_ROOT/dev"

# Pinned versions and ports; the environment may override any port.
set -a
# shellcheck source=../versions.env
source "$DEV_DIR/versions.env"
while IFS='=' read -r key value; do
  [[ -z "$key" || "$key" == \#* ]] && continue
  [[ -z "${!key:-}" ]] && printf -v "$key" '%s' "$value"
done < "$DEV_DIR/ports.env"
set +a

# Downloads and build output live outside the clone so a fresh clone reuses them.
SAGA_CACHE="${SAGA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saga-pipeline}"
# rustup's default install dir, for shells (CI) whose PATH lacks it.
[[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SAGA_CACHE/cargo-target}"
# Data, logs and pid files: one git-ignored directory in the clone.
STACK_DIR="${SAGA_STACK_DIR:-$REPO_ROOT/.stack}"
LOG_DIR="$STACK_DIR/logs"
RUN_DIR="$STACK_DIR/run"

# Read by the scripts that source this file.
# shellcheck disable=SC2034
{
KAFKA_HOME="$SAGA_CACHE/kafka-$KAFKA_VERSION"
DEBEZIUM_HOME="$SAGA_CACHE/debezium-$DEBEZIUM_VERSION"
APICURIO_HOME="$SAGA_CACHE/apicurio-$APICURIO_VERSION"
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"

# Credentials of the dev database (local loopback only).
PG_USER=saga
PG_PASSWORD=saga
PG_DATABASE=saga
}

say()  { printf '\033[1m[stack]\033[0m %s\n' "$*"; }
warn() { printf '\033[33m[stack]\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[31m[stack] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Fails naming the service and showing the tail of its log.
fail_service() {
  local service="$1" reason="$2" log="$LOG_DIR/$1.log"
  printf '\033[31m[stack] %s failed:\033[0m %s\n' "$service" "$reason" >&2
  if [[ -f "$log" ]]; then
    printf -- '--- last 40 lines of %s ---\n' "$log" >&2
    tail -n 40 "$log" >&2
  fi
  exit 1
}

# wait_for SERVICE SECONDS CHECK...: polls CHECK until it succeeds, or fails the service.
wait_for() {
  local service="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      fail_service "$service" "no healthy answer within ${seconds}s (check: $*)"
    fi
    if ! service_alive "$service"; then
      fail_service "$service" "process exited during start-up"
    fi
    sleep 0.5
  done
}

pid_file() { echo "$RUN_DIR/$1.pid"; }

service_alive() {
  local pf; pf="$(pid_file "$1")"
  [[ -f "$pf" ]] && kill -0 "$(cat "$pf")" 2>/dev/null
}

# start_daemon SERVICE CMD...: runs CMD detached, logging to the service's log file.
start_daemon() {
  local service="$1"; shift
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  setsid nohup "$@" >>"$LOG_DIR/$service.log" 2>&1 < /dev/null &
  echo $! >"$(pid_file "$service")"
}

# stop_daemon SERVICE: TERM, wait, then KILL.
stop_daemon() {
  local service="$1" pf pid
  pf="$(pid_file "$service")"
  [[ -f "$pf" ]] || return 0
  pid="$(cat "$pf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$service did not stop in 30s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pf"
}

http_ok() { curl -fsS -o /dev/null --max-time 3 "$1" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kafka_java() { java -Xms64m -Xmx256m -cp "$KAFKA_HOME/lib/*" -Dlog4j2.configurationFile="$DEV_DIR/config/log4j2-tools.properties" "$@"; }

# python_venv VENV REQUIREMENTS: a cached venv for a dev tool. Made once, and installed into
# again only when REQUIREMENTS changes (a stamp with its SHA-256 in the venv).
python_venv() {
  local venv="$1" requirements="$2" stamp wanted
  stamp="$venv/.$(basename "$requirements" .txt).sha256"
  wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ ! -x "$venv/bin/python" ]]; then
    say "creating the Python venv $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    say "installing the packages pinned in $(basename "$requirements") into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$wanted" >"$stamp"
  fi
}
