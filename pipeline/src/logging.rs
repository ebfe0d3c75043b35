//! The process's log output: human-readable text (the default), or one JSON object per line for
//! a log shipper (`[logging] format = "json"`, or `SAGA__LOGGING__FORMAT=json`). The level comes
//! from `RUST_LOG`, `info` otherwise. Spans also go to an OTLP collector if one is configured
//! (`crate::otlp`).

use std::io::IsTerminal;

use anyhow::Result;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::otlp::{self, TracingSettings};

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    #[serde(default)]
    pub format: LogFormat,
}

/// Logs to stderr, and exports spans over OTLP when an endpoint is configured, until the
/// returned guard drops (which flushes the spans still buffered).
pub fn init(logging: &LoggingSettings, tracing: &TracingSettings) -> Result<Telemetry> {
    let provider = match &tracing.otlp_endpoint {
        Some(endpoint) => Some(otlp::provider(endpoint, tracing.service_name.as_deref().unwrap_or("saga-pipeline"))?),
        None => None,
    };
    let subscriber = tracing_subscriber::registry()
        .with(fmt_layer(logging.format, std::io::stderr, std::io::stderr().is_terminal()))
        .with(provider.as_ref().map(otlp::layer));
    // try_init also routes the `log` records of librdkafka's bindings into the subscriber.
    if subscriber.try_init().is_err() {
        ::tracing::warn!("a logger was set already; keeping it");
    }
    Ok(Telemetry { provider })
}

/// Keeps the span exporter until the process ends.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The exporter's HTTP client blocks: off the async runtime, as it was built.
            let _ = std::thread::spawn(move || provider.shutdown()).join();
        }
    }
}

fn fmt_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into());
    match format {
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi).with_filter(filter).boxed()
        }
        // Span fields (a saga event's order id, say) go with every line logged inside it.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_the_fields_and_the_span() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(fmt_layer(LogFormat::Json, move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("record", topic = "order.events", offset = 41);
            let _entered = span.enter();
            tracing::warn!(order_id = "o-1", "record failed");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("a JSON object");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "record failed");
        assert_eq!(line["fields"]["order_id"], "o-1");
        assert_eq!((line["span"]["topic"].as_str(), line["span"]["offset"].as_i64()), (Some("order.events"), Some(41)));
    }

    #[test]
    fn the_format_is_read_in_lowercase() {
        let settings: LoggingSettings = toml::from_str("format = \"json\"").unwrap();
        assert_eq!(settings.format, LogFormat::Json);
        assert!(toml::from_str::<LoggingSettings>("format = \"yaml\"").is_err());
    }
}
