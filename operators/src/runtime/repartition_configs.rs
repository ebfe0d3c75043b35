//! The configs a repartition topic needs, set at creation and brought up to date on a topic an
//! earlier version created without them (it had the broker's 7-day time retention).

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use super::internal_events::RepartitionConfigsUpdated;

/// As Kafka Streams creates them: a repartitioned record keeps its input's timestamp, so time
/// retention could delete an old backlog before it is read; the purge deletes what is consumed
/// instead, and small segments let it free the disk soon.
pub const REPARTITION_CONFIGS: [(&str, &str); 3] =
    [("retention.ms", "-1"), ("segment.bytes", "52428800"), ("segment.ms", "600000")];

/// Sets [`REPARTITION_CONFIGS`] on each topic that lacks them, keeping its other topic-level
/// configs (the broker's AlterConfigs replaces the whole set). Failing is a warning, not a
/// failed start: a client without the ALTER_CONFIGS right still runs as before.
pub fn bring_up_to_date(admin: &AdminClient<DefaultClientContext>, topics: &[String], options: &AdminOptions) {
    for topic in topics {
        if let Err(error) = bring_one_up_to_date(admin, topic, options) {
            RepartitionConfigsUpdated { topic, error: Some(&error) }.emit();
        }
    }
}

fn bring_one_up_to_date(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    options: &AdminOptions,
) -> Result<(), String> {
    let described = futures::executor::block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], options))
        .map_err(|e| e.to_string())?;
    let resource =
        described.into_iter().next().ok_or("no answer to DescribeConfigs")?.map_err(|code| code.to_string())?;
    if REPARTITION_CONFIGS.iter().all(|(key, value)| resource.get(key).and_then(|e| e.value.as_deref()) == Some(value))
    {
        return Ok(());
    }
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for entry in resource.entries.iter().filter(|e| e.source == ConfigSource::DynamicTopic) {
        if let Some(value) = &entry.value {
            alter = alter.set(&entry.name, value);
        }
    }
    for (key, value) in REPARTITION_CONFIGS {
        alter = alter.set(key, value);
    }
    let results = futures::executor::block_on(admin.alter_configs([&alter], options)).map_err(|e| e.to_string())?;
    for result in results {
        result.map_err(|(_, code)| code.to_string())?;
    }
    RepartitionConfigsUpdated { topic, error: None }.emit();
    Ok(())
}
