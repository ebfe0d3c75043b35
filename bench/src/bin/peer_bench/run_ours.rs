//! The child process of an "ours" run: the payment participant alone, configured as
//! `pipeline payment` configures it, on the run's topics, until SIGTERM.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use operators::error::ErrorPolicy;
use operators::runtime::{KafkaStreams, ProcessingGuarantee, StreamsConfig};
use pipeline::event_serde::EventSerde;
use pipeline::participants::payment::{self, PaymentConfig};
use pipeline::participants::SagaTopics;
use pipeline::settings::Settings;

pub const COMMAND: &str = "run-ours";
/// Every customer's starting balance in both contestants: no charge is declined.
pub const BALANCE_CENTS: i64 = 1 << 50;

pub fn main(args: &[String]) -> Result<()> {
    let mut options = std::collections::HashMap::new();
    for pair in args.chunks(2) {
        let [name, value] = pair else { bail!("{} needs a value", pair[0]) };
        options.insert(name.as_str(), value.clone());
    }
    let option = |name: &str| options.get(name).cloned().with_context(|| format!("{COMMAND}: {name} is required"));
    let settings = Settings::load(&PathBuf::from(option("--config")?), std::env::vars())?;
    let application_id = option("--application-id")?;
    let topics = SagaTopics {
        order: option("--order-topic")?,
        inventory: option("--inventory-topic")?,
        payment: option("--payment-topic")?,
        shipping: format!("{application_id}.shipping.events"),
    };
    let config = PaymentConfig {
        application_id: application_id.clone(),
        topics,
        default_balance_cents: option("--default-balance-cents")?.parse().context("--default-balance-cents")?,
        retention: settings.retention(),
        ..Default::default()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let serde = EventSerde::new(pipeline::components::saga_codec(&settings).await?);
        let mut streams_config = StreamsConfig::new(application_id.as_str(), settings.kafka.bootstrap_servers.as_str());
        streams_config.commit_interval = settings.commit_interval("payment");
        streams_config.error_policy = ErrorPolicy::Retry(settings.retry.policy());
        streams_config.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
        let streams =
            KafkaStreams::start(payment::topology(serde, &config), streams_config, &prometheus::Registry::new())
                .context("starting payment")?;
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        terminate.recv().await;
        streams.close().context("closing payment")
    })
}
