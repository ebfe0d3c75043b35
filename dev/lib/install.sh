# shellcheck shell=bash
# Installs what the stack and the build need, once. Sourced by dev/stack.

# Debian packages: servers, the native headers rdkafka's bundled librdkafka build needs, and
# the linter dev/test runs on the scripts (shellcheck).
DEBIAN_PACKAGES=(
  "postgresql-$PG_MAJOR" postgresql-client redis-server redis-tools prometheus
  cmake libcurl4-openssl-dev zlib1g-dev libssl-dev pkg-config curl shellcheck
)

missing_debian_packages() {
  local p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

ensure_debian_packages() {
  local missing
  missing="$(missing_debian_packages | tr '\n' ' ')"
  [[ -z "${missing// }" ]] && return 0
  local missing_list
  read -r -a missing_list <<<"$missing"
  command -v apt-get >/dev/null || die "missing packages ($missing) and no apt-get to install them"
  local sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  say "installing Debian packages: $missing"
  $sudo apt-get update -qq || die "apt-get update failed"
  # Servers must not auto-start from their packages: the stack runs its own instances.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${missing_list[@]}" \
    >"$SAGA_CACHE/apt-install.log" 2>&1 || { tail -n 30 "$SAGA_CACHE/apt-install.log" >&2; die "apt-get install failed for: $missing"; }
}

ensure_tools() {
  local t
  for t in java mvn cargo curl; do
    command -v "$t" >/dev/null || die "'$t' is not on PATH; the stack needs Java 17, Maven, Rust and curl"
  done
}

# Maven's output goes to a log, shown only when it fails.
mvn_quiet() {
  local log="$SAGA_CACHE/maven.log"
  mvn -B -q "$@" >"$log" 2>&1 || { tail -n 30 "$log" >&2; return 1; }
}

# Kafka broker, tools and Connect runtime jars, resolved through dev/jvm/pom.xml.
ensure_kafka_jars() {
  [[ -f "$KAFKA_HOME/.complete" ]] && return 0
  say "downloading Apache Kafka $KAFKA_VERSION jars (Maven Central) into $KAFKA_HOME"
  rm -rf "$KAFKA_HOME"
  mvn_quiet -f "$DEV_DIR/jvm/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -Dscala.binary.version="$SCALA_BINARY_VERSION" \
    -Dlog4j.version="$LOG4J_VERSION" -Dslf4j.version="$SLF4J_VERSION" \
    -Dmdep.includeScope=runtime -DoutputDirectory="$KAFKA_HOME/lib" \
    || die "could not resolve Kafka $KAFKA_VERSION from Maven Central (dev/jvm/pom.xml)"
  # A stray slf4j 1.x from a transitive dependency would hide the log4j binding.
  rm -f "$KAFKA_HOME"/lib/slf4j-api-1.*.jar
  touch "$KAFKA_HOME/.complete"
}

# unpack_artifact GAV DEST: fetches an archive from Maven Central and unpacks it.
unpack_artifact() {
  local gav="$1" dest="$2"
  local scratch
  rm -rf "$dest"
  # A scratch working dir: the plugin's "already unpacked" markers would otherwise make a re-fetch a no-op.
  scratch="$(mktemp -d)"
  (cd "$scratch" && mvn_quiet dependency:unpack -Dartifact="$gav" -DoutputDirectory="$dest") \
    || die "could not fetch $gav from Maven Central"
  rm -rf "$scratch"
  # Pax headers unpack as stray folders; Connect would scan them as plugins.
  find "$dest" -name PaxHeaders.X -prune -exec rm -rf {} +
  touch "$dest/.complete"
}

ensure_debezium_plugin() {
  [[ -f "$DEBEZIUM_HOME/.complete" ]] && return 0
  say "downloading the Debezium Postgres connector $DEBEZIUM_VERSION plugin"
  unpack_artifact "io.debezium:debezium-connector-postgres:$DEBEZIUM_VERSION:tar.gz:plugin" "$DEBEZIUM_HOME"
  compgen -G "$DEBEZIUM_HOME/debezium-connector-postgres/debezium-connector-postgres-*.jar" >/dev/null \
    || { rm -f "$DEBEZIUM_HOME/.complete"; die "Debezium plugin archive unpacked without its connector jar ($DEBEZIUM_HOME)"; }
}

ensure_apicurio() {
  [[ -f "$APICURIO_HOME/.complete" ]] && return 0
  say "downloading Apicurio Registry $APICURIO_VERSION"
  unpack_artifact "io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" "$APICURIO_HOME"
  [[ -f "$APICURIO_HOME/quarkus-run.jar" ]] || rm -f "$APICURIO_HOME/.complete" || true
  [[ -f "$APICURIO_HOME/quarkus-run.jar" ]] || die "Apicurio archive has no quarkus-run.jar in $APICURIO_HOME"
}

install_all() {
  mkdir -p "$SAGA_CACHE"
  ensure_tools
  ensure_debian_packages
  ensure_kafka_jars
  ensure_debezium_plugin
  ensure_apicurio
}
