//! The local stack's addresses as the defaults of the keys that name them, so that the pipeline,
//! the dev scripts and the tests take the ports from one place: `dev/ports.env`, each port
//! overridable by an environment variable of its name (`KAFKA_PORT=19092`), as `dev/lib/common.sh`
//! does. A config file or a `SAGA__…` variable that sets one of these keys wins (a deployment names
//! its own servers), and then its port variable is not even read: Kubernetes, for one, sets
//! `<SERVICE>_PORT=tcp://…` for every service, `KAFKA_PORT` included.

use figment::providers::Serialized;
use figment::Figment;
use serde_json::{json, Value};

/// Compiled in: the binary then needs no checkout to find it.
const PORTS_ENV: &str = include_str!("../../../dev/ports.env");

const HOST: &str = "127.0.0.1";

/// Each key the local stack provides, with the variable that holds its port.
const ADDRESSES: [(&str, &str); 8] = [
    ("kafka.bootstrap_servers", "KAFKA_PORT"),
    ("registry.url", "REGISTRY_PORT"),
    ("database.host", "POSTGRES_PORT"),
    ("database.port", "POSTGRES_PORT"),
    ("redis.url", "REDIS_PORT"),
    ("connect.url", "CONNECT_PORT"),
    ("http.order_api_port", "ORDER_API_PORT"),
    ("http.admin_port", "ADMIN_PORT"),
];

/// The local stack's address for each of [`ADDRESSES`] that `configured` leaves unset, as the
/// lowest layer under it; an error names a port variable that is needed and is no port number.
pub(super) fn defaults_under(configured: &Figment, env: &[(String, String)]) -> Result<Figment, String> {
    ADDRESSES.iter().filter(|(key, _)| !configured.contains(key)).try_fold(
        Figment::new(),
        |defaults, &(key, port_variable)| {
            let value = address(key, port(env, port_variable)?);
            Ok(defaults.merge(Serialized::default(key, value)))
        },
    )
}

fn address(key: &str, port: u16) -> Value {
    match key {
        "kafka.bootstrap_servers" => json!(format!("{HOST}:{port}")),
        "registry.url" => json!(format!("http://{HOST}:{port}")),
        "database.host" => json!(HOST),
        "redis.url" => json!(format!("redis://{HOST}:{port}/")),
        "connect.url" => json!(format!("http://{HOST}:{port}")),
        _ => json!(port),
    }
}

/// The port named `name`: from the environment unless unset or empty (as in the dev scripts),
/// else from `dev/ports.env`.
fn port(env: &[(String, String)], name: &str) -> Result<u16, String> {
    let from_env = env.iter().rev().find(|(key, value)| key == name && !value.is_empty());
    let (value, origin) = match from_env {
        Some((_, value)) => (value.as_str(), "environment variable"),
        None => match ports_env().find(|(key, _)| *key == name) {
            Some((_, value)) => (value, "dev/ports.env:"),
            None => return Err(format!("dev/ports.env has no {name}")),
        },
    };
    value.parse().map_err(|_| format!("{origin} {name}={value:?} is not a port number"))
}

/// The `NAME=value` lines of `dev/ports.env`.
pub(super) fn ports_env() -> impl Iterator<Item = (&'static str, &'static str)> {
    PORTS_ENV
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
}
