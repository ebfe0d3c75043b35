# shellcheck shell=bash
# One start and one health check per service of the local stack. Sourced by dev/stack.

render() { # render TEMPLATE OUT: substitutes @NAME@ with $NAME
  local template="$1" out="$2" content name
  content="$(cat "$template")"
  for name in KAFKA_PORT KAFKA_CONTROLLER_PORT CONNECT_PORT PROMETHEUS_PORT ADMIN_PORT DEBEZIUM_HOME STACK_DIR REPO_ROOT DATA_DIR; do
    content="${content//@$name@/${!name:-}}"
  done
  printf '%s\n' "$content" >"$out"
}

# ---- PostgreSQL: a dedicated cluster under the stack dir, run as the unprivileged postgres user.
pg_as_owner() {
  # From /: the caller's working dir may be one the postgres user cannot enter.
  if [[ "$(id -u)" -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
# Resolved paths: the postgres user may not be able to walk through $STACK_DIR (see below).
PG_DIR() { readlink -f "$STACK_DIR/postgres"; }
PG_DATA() { echo "$(PG_DIR)/data"; }
PG_SOCKET() { echo "$(PG_DIR)/run"; }
# The postgres user must reach its data dir. A clone under a private home (/root) is not reachable,
# so the cluster then lives in /var/lib/postgresql and $STACK_DIR/postgres links to it.
place_postgres_dir() {
  [[ "$(id -u)" -eq 0 ]] || { mkdir -p "$STACK_DIR/postgres"; return 0; }
  [[ -e "$STACK_DIR/postgres" ]] && return 0
  mkdir -p "$STACK_DIR"
  if runuser -u postgres -- test -x "$STACK_DIR"; then
    mkdir -p "$STACK_DIR/postgres"
  else
    local outside
    outside="/var/lib/postgresql/saga-stack-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)"
    mkdir -p "$outside"
    ln -s "$outside" "$STACK_DIR/postgres"
  fi
}
health_postgres() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" &&
    PGPASSWORD="$PG_PASSWORD" psql -qtAX -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$PG_USER" -d "$PG_DATABASE" \
      -c "select 1 where current_setting('wal_level') = 'logical'" | grep -q 1
}
start_postgres() {
  place_postgres_dir
  local data sock; data="$(PG_DATA)"; sock="$(PG_SOCKET)"
  mkdir -p "$sock" "$LOG_DIR"
  [[ "$(id -u)" -eq 0 ]] && chown postgres "$STACK_DIR/postgres/" "$sock"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    say "postgres: creating a cluster in $data"
    local pwfile; pwfile="$(PG_DIR)/.pw"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"; [[ "$(id -u)" -eq 0 ]] && chown postgres "$pwfile"
    pg_as_owner "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" -A scram-sha-256 -E UTF8 \
      >"$LOG_DIR/postgres-initdb.log" 2>&1 || { rm -f "$pwfile"; fail_service postgres-initdb "initdb failed"; }
    rm -f "$pwfile"
    cat >>"$data/postgresql.conf" <<CONF
# dev/stack: logical decoding for Debezium, loopback only.
listen_addresses = '127.0.0.1'
port = $POSTGRES_PORT
unix_socket_directories = '$sock'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_connections = 200
fsync = on
CONF
    printf 'host replication all 127.0.0.1/32 scram-sha-256\n' >>"$data/pg_hba.conf"
  fi
  if health_postgres; then say "postgres: already up"; return 0; fi
  # The server writes its log as the postgres user, inside its own dir; logs/ links to it.
  ln -sfn "$(PG_DIR)/server.log" "$LOG_DIR/postgres.log"
  pg_as_owner "$PG_BIN/pg_ctl" -D "$data" -l "$(PG_DIR)/server.log" -w -t 60 start >/dev/null \
    || fail_service postgres "pg_ctl start failed (is port $POSTGRES_PORT taken by another PostgreSQL?)"
  head -1 "$data/postmaster.pid" >"$(pid_file postgres)"
  wait_for postgres 30 "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"
  # The registry keeps its schemas in a database of its own.
  PGPASSWORD="$PG_PASSWORD" psql -qtAX -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$PG_USER" -d postgres \
    -c "select 1 from pg_database where datname='$PG_DATABASE'" | grep -q 1 ||
    PGPASSWORD="$PG_PASSWORD" createdb -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$PG_USER" "$PG_DATABASE"
  PGPASSWORD="$PG_PASSWORD" psql -qtAX -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$PG_USER" -d postgres \
    -c "select 1 from pg_database where datname='registry'" | grep -q 1 ||
    PGPASSWORD="$PG_PASSWORD" createdb -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$PG_USER" registry
  wait_for postgres 30 health_postgres
}
stop_postgres() {
  local data; data="$(PG_DATA)"
  if [[ -f "$data/postmaster.pid" ]]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  rm -f "$(pid_file postgres)"
}

# ---- Redis
health_redis() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }
start_redis() {
  if health_redis; then say "redis: already up"; return 0; fi
  mkdir -p "$STACK_DIR/redis"
  start_daemon redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STACK_DIR/redis" \
    --appendonly yes --save "" --daemonize no --protected-mode yes
  wait_for redis 30 health_redis
}

# ---- Kafka (KRaft, combined broker+controller)
health_kafka() {
  port_open "$KAFKA_PORT" &&
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null
}
start_kafka() {
  if port_open "$KAFKA_PORT" && health_kafka; then say "kafka: already up"; return 0; fi
  local DATA_DIR="$STACK_DIR/kafka/data" props="$STACK_DIR/kafka/server.properties"
  mkdir -p "$DATA_DIR"
  render "$DEV_DIR/config/server.properties.in" "$props"
  if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid)" || fail_service kafka "StorageTool random-uuid failed"
    say "kafka: formatting KRaft storage (cluster $cluster_id)"
    kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$props" >>"$LOG_DIR/kafka.log" 2>&1 \
      || fail_service kafka "StorageTool format failed"
  fi
  start_daemon kafka java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DEV_DIR/config/log4j2.properties" \
    -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$props"
  wait_for kafka 90 port_open "$KAFKA_PORT"
  wait_for kafka 60 health_kafka
}

# ---- Apicurio Registry 3 (Confluent-compatible API at /apis/ccompat/v7), schemas kept in PostgreSQL.
# Apicurio 3.3 is built for Java 21+; the broker and Connect run on the system Java 17.
registry_java() {
  local candidate major
  for candidate in "${REGISTRY_JAVA_HOME:-}" /usr/lib/jvm/*; do
    [[ -n "$candidate" && -x "$candidate/bin/java" ]] || continue
    major="$("$candidate/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
    if [[ "${major%%.*}" -ge 21 ]]; then echo "$candidate/bin/java"; return 0; fi
  done
  return 1
}
health_registry() { http_ok "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects"; }
start_registry() {
  if health_registry; then say "registry: already up"; return 0; fi
  if service_alive registry; then
    # Running but answering 500 (its connection pool renewing itself after a PostgreSQL restart,
    # seen for about a minute): a second registry could not take the port.
    say "registry: running but not healthy yet; waiting for it"
    wait_for registry 120 health_registry
    return 0
  fi
  local java
  java="$(registry_java)" || fail_service registry "Apicurio Registry $APICURIO_VERSION needs Java 21 or newer; none found in /usr/lib/jvm (set REGISTRY_JAVA_HOME)"
  (
    cd "$APICURIO_HOME" || exit
    export APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=postgresql \
      APICURIO_DATASOURCE_URL="jdbc:postgresql://127.0.0.1:$POSTGRES_PORT/registry" \
      APICURIO_DATASOURCE_USERNAME="$PG_USER" APICURIO_DATASOURCE_PASSWORD="$PG_PASSWORD" \
      QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_HTTP_PORT="$REGISTRY_PORT"
    start_daemon registry "$java" -Xms128m -Xmx512m -jar quarkus-run.jar
  )
  wait_for registry 120 health_registry
}

# ---- Kafka Connect (distributed) with the Debezium Postgres plugin.
health_connect() {
  curl -fsS --max-time 3 "http://127.0.0.1:$CONNECT_PORT/connector-plugins" 2>/dev/null |
    grep -q 'io.debezium.connector.postgresql.PostgresConnector'
}
start_connect() {
  local props="$STACK_DIR/connect/worker.properties" rendered="$STACK_DIR/connect/worker.properties.new"
  mkdir -p "$STACK_DIR/connect"
  render "$DEV_DIR/config/connect-distributed.properties.in" "$rendered"
  if health_connect; then
    if cmp -s "$rendered" "$props"; then rm -f "$rendered"; say "connect: already up"; return 0; fi
    say "connect: its worker configuration changed; restarting it"
    stop_daemon connect
  fi
  mv "$rendered" "$props"
  # The connector's "${env:SAGA_CONNECT_DATABASE_PASSWORD}" resolves from here.
  SAGA_CONNECT_DATABASE_PASSWORD="$PG_PASSWORD" start_daemon connect java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DEV_DIR/config/log4j2.properties" \
    -cp "$KAFKA_HOME/lib/*" org.apache.kafka.connect.cli.ConnectDistributed "$props"
  wait_for connect 180 health_connect
}

# ---- Prometheus
health_prometheus() { http_ok "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"; }
start_prometheus() {
  if health_prometheus; then say "prometheus: already up"; return 0; fi
  mkdir -p "$STACK_DIR/prometheus/data" "$STACK_DIR/prometheus/targets"
  render "$DEV_DIR/config/prometheus.yml.in" "$STACK_DIR/prometheus/prometheus.yml"
  start_daemon prometheus prometheus --config.file="$STACK_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STACK_DIR/prometheus/data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    --web.enable-lifecycle
  wait_for prometheus 60 health_prometheus
}

# Start order follows dependencies: the registry stores its schemas in PostgreSQL, Connect needs Kafka.
# shellcheck disable=SC2034 # read by dev/stack
SERVICES=(postgres redis kafka registry connect prometheus)
