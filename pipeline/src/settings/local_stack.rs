//! The local stack's addresses as the defaults of the keys that name them, so that the pipeline,
//! the dev scripts and the tests take the ports from one place: `dev/ports.env`, each port
//! overridable by an environment variable of its name (`KAFKA_PORT=19092`), as `dev/lib/common.sh`
//! does. A config file that sets one of these keys wins (a deployment names its own servers).

use figment::providers::Serialized;
use figment::value::{Dict, Map};
use figment::{Error, Metadata, Profile, Provider};
use serde_json::json;

/// Compiled in: the binary then needs no checkout to find it.
const PORTS_ENV: &str = include_str!("../../../dev/ports.env");

const HOST: &str = "127.0.0.1";

pub(super) struct LocalStack {
    /// The `*_PORT` variables of the environment; the others are of no concern here.
    env: Vec<(String, String)>,
}

impl LocalStack {
    pub(super) fn from_env(env: &[(String, String)]) -> Self {
        LocalStack { env: env.iter().filter(|(name, _)| name.ends_with("_PORT")).cloned().collect() }
    }

    /// The port named `name`: from the environment unless unset or empty (as in the dev scripts),
    /// else from `dev/ports.env`.
    fn port(&self, name: &str) -> Result<u16, String> {
        let from_env = self.env.iter().rev().find(|(key, value)| key == name && !value.is_empty());
        let (value, origin) = match from_env {
            Some((_, value)) => (value.as_str(), "environment variable"),
            None => match ports_env().find(|(key, _)| *key == name) {
                Some((_, value)) => (value, "dev/ports.env:"),
                None => return Err(format!("dev/ports.env has no {name}")),
            },
        };
        value.parse().map_err(|_| format!("{origin} {name}={value:?} is not a port number"))
    }

    /// The keys this provides, as a config file would set them.
    fn addresses(&self) -> Result<serde_json::Value, String> {
        Ok(json!({
            "kafka": { "bootstrap_servers": format!("{HOST}:{}", self.port("KAFKA_PORT")?) },
            "registry": { "url": format!("http://{HOST}:{}", self.port("REGISTRY_PORT")?) },
            "database": { "host": HOST, "port": self.port("POSTGRES_PORT")? },
            "redis": { "url": format!("redis://{HOST}:{}/", self.port("REDIS_PORT")?) },
            "connect": { "url": format!("http://{HOST}:{}", self.port("CONNECT_PORT")?) },
            "http": {
                "order_api_port": self.port("ORDER_API_PORT")?,
                "admin_port": self.port("ADMIN_PORT")?,
            },
        }))
    }
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

impl Provider for LocalStack {
    fn metadata(&self) -> Metadata {
        Metadata::named("the local stack's ports")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Serialized::defaults(self.addresses().map_err(Error::from)?).data()
    }
}
