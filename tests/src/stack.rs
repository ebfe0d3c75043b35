//! Endpoints of the local stack, read from `dev/ports.env` (overridable by environment variables).

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Data and logs of the running stack (`SAGA_STACK_DIR`, default `<repo>/.stack`).
pub fn stack_dir() -> PathBuf {
    std::env::var_os("SAGA_STACK_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".stack"))
}

/// A port from `dev/ports.env`, unless the environment sets the same name.
pub fn port(name: &str) -> u16 {
    if let Ok(value) = std::env::var(name) {
        return value.parse().unwrap_or_else(|_| panic!("{name}={value} is not a port number"));
    }
    let ports = read_env_file("dev/ports.env");
    let value = ports.get(name).unwrap_or_else(|| panic!("dev/ports.env has no {name}"));
    value.parse().unwrap_or_else(|_| panic!("dev/ports.env: {name}={value} is not a port number"))
}

/// The `NAME=value` lines of one of `dev/`'s env files (`ports.env`, `versions.env`).
fn read_env_file(relative_path: &str) -> HashMap<String, String> {
    let path = repo_root().join(relative_path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Panics naming the service unless something listens on its port (with the `testcontainers`
/// feature, once the containers are up).
pub fn require(service: &str, port_name: &str) -> u16 {
    #[cfg(feature = "testcontainers")]
    crate::containers::start_once();
    let port = port(port_name);
    let address = format!("127.0.0.1:{port}");
    let reachable =
        address.parse().ok().and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()).is_some();
    assert!(
        reachable,
        "{service} is down: nothing answers on {address} ({port_name}). Start the stack with `dev/stack up`; \
         `dev/stack status` shows which service failed."
    );
    port
}

pub fn kafka_bootstrap() -> String {
    format!("127.0.0.1:{}", require("kafka", "KAFKA_PORT"))
}

pub fn registry_url() -> String {
    format!("http://127.0.0.1:{}/apis/ccompat/v7", require("registry (Apicurio)", "REGISTRY_PORT"))
}

/// A client of the stack's registry with every saga schema registered, as `pipeline setup`
/// (or `pipeline schemas register`) leaves it before any producer starts.
pub async fn registry_with_saga_schemas() -> schemas::RegistryClient {
    let base = registry_url().trim_end_matches("/apis/ccompat/v7").to_string();
    let registry = schemas::RegistryClient::new(&base).expect("registry url").retrying(5);
    schemas::register_all(&registry)
        .await
        .unwrap_or_else(|e| panic!("registry (Apicurio) at {base} is down or refuses the saga schemas: {e}"));
    registry
}

pub fn connect_url() -> String {
    format!("http://127.0.0.1:{}", require("kafka connect", "CONNECT_PORT"))
}

pub fn postgres_config() -> String {
    postgres_config_at(require("postgres", "POSTGRES_PORT"))
}

/// The stack's database reached through another port, such as an [`crate::outage::Outage`]'s.
pub fn postgres_config_at(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=saga password=saga dbname=saga")
}

pub fn redis_url() -> String {
    format!("redis://127.0.0.1:{}/", require("redis", "REDIS_PORT"))
}

pub fn prometheus_url() -> String {
    format!("http://127.0.0.1:{}", require("prometheus", "PROMETHEUS_PORT"))
}

/// A name no other test run uses, for topics, tables, keys and connectors.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_yaml_runs_the_versions_dev_stack_runs() {
        let versions = read_env_file("dev/versions.env");
        let compose = std::fs::read_to_string(repo_root().join("compose.yaml")).expect("compose.yaml");
        let images: Vec<&str> = compose.lines().filter_map(|line| line.trim().strip_prefix("image: ")).collect();
        for (repository, version) in [
            ("postgres", "PG_MAJOR"),
            ("apache/kafka", "KAFKA_VERSION"),
            ("apicurio/apicurio-registry", "APICURIO_VERSION"),
            ("quay.io/debezium/connect", "DEBEZIUM_VERSION"),
        ] {
            let wanted = format!("{repository}:{}", versions[version]);
            assert!(
                images.contains(&wanted.as_str()),
                "compose.yaml should run {wanted} ({version}), it runs {images:?}"
            );
        }
    }

    #[test]
    fn compose_yaml_listens_on_the_ports_of_ports_env() {
        let compose = std::fs::read_to_string(repo_root().join("compose.yaml")).expect("compose.yaml");
        let numbers: Vec<&str> = compose.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()).collect();
        for (name, value) in read_env_file("dev/ports.env") {
            if matches!(name.as_str(), "ORDER_API_PORT" | "ADMIN_PORT") {
                continue; // The pipeline's own ports, not the stack's.
            }
            assert!(numbers.contains(&value.as_str()), "compose.yaml does not use {name}={value}");
        }
    }
}
