//! `pipeline schemas check` and `pipeline schemas register`: the gate every schema version goes
//! through before producers use it.

use anyhow::{bail, Context, Result};

use crate::components::{self, REGISTRY_ATTEMPTS};
use crate::settings::Settings;

/// Checks every version in `schemas/avro` against the earlier ones under its subject's level:
/// with apache-avro's rules, then (unless `offline`) with the live registry's. Prints each
/// problem (subject, versions, field, rule) and fails if there is one.
pub async fn check(settings: &Settings, offline: bool) -> Result<()> {
    let local = schemas::check_versions();
    println!("local check (apache-avro): {}", verdict(local.len()));
    local.iter().for_each(|problem| println!("  {problem}"));

    let mut refused = 0;
    if !offline {
        let registry =
            schemas::RegistryClient::new(&settings.registry.url).context("registry.url")?.retrying(REGISTRY_ATTEMPTS);
        let refusals = schemas::check_in_registry(&registry)
            .await
            .with_context(|| format!("checking the schemas in the registry at {}", settings.registry.url))?;
        println!("registry check ({}): {}", settings.registry.url, verdict(refusals.len()));
        refusals.iter().for_each(|refusal| println!("  {refusal}"));
        refused = refusals.len();
    }
    if !local.is_empty() || refused > 0 {
        bail!("{} schema version(s) break their subject's compatibility level (listed above)", local.len() + refused);
    }
    Ok(())
}

/// Applies each subject's level and registers every version, oldest first; prints the ids.
pub async fn register(settings: &Settings) -> Result<()> {
    for registered in components::register_schemas(settings).await? {
        let level = schemas::compatibility_of(&registered.subject);
        println!("{} v{} -> id {} ({level})", registered.subject, registered.version, registered.id);
    }
    Ok(())
}

fn verdict(problems: usize) -> String {
    if problems == 0 {
        "every version keeps its subject's level".to_string()
    } else {
        format!("{problems} problem(s)")
    }
}
