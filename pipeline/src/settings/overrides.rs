//! The `SAGA__<SECTION>__<KEY>` environment variables, each a figment provider of the one key it
//! names, so that an error about that key names the variable.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

const PREFIX: &str = "SAGA__";

/// Keys whose value is always a string, taken as given: a secret of digits must not become a
/// number, and then a type error quoting it.
const SECRET_KEYS: [&str; 2] = ["password", "token"];

/// `SAGA__KAFKA__BOOTSTRAP_SERVERS=x` sets `kafka.bootstrap_servers` (`__` nests, names are
/// lowercased). The value is read as a number, boolean, array, table or quoted string when it
/// parses as one, else taken as a string.
pub(super) struct Override {
    name: String,
    /// The name without the prefix: `KAFKA__BOOTSTRAP_SERVERS`.
    key: String,
    value: String,
}

impl Override {
    /// The `SAGA__` variables of `env`, in its order: a later one wins.
    pub(super) fn all_in(env: &[(String, String)]) -> impl Iterator<Item = Override> + '_ {
        env.iter().filter_map(|(name, value)| {
            let key = name.strip_prefix(PREFIX)?;
            Some(Override { name: name.clone(), key: key.to_string(), value: value.clone() })
        })
    }
}

impl Provider for Override {
    fn metadata(&self) -> Metadata {
        Metadata::from("environment variable", figment::Source::Custom(self.name.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let path: Vec<String> = self.key.split("__").map(str::to_lowercase).collect();
        let Some((section, keys)) = path.split_first().filter(|_| path.iter().all(|key| !key.is_empty())) else {
            return Err(Error::from("malformed key".to_string()));
        };
        let secret = path.last().is_some_and(|key| SECRET_KEYS.contains(&key.as_str()));
        let value = if secret {
            Value::from(self.value.clone())
        } else {
            self.value.parse().unwrap_or_else(|infallible| match infallible {})
        };
        let nested = keys.iter().rev().fold(value, |inner, key| Value::from(Dict::from([(key.clone(), inner)])));
        let dict = Dict::from([(section.clone(), nested)]);
        Ok(Profile::Default.collect(dict))
    }
}
