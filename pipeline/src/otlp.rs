//! OpenTelemetry export of the saga's spans over OTLP/HTTP (protobuf), off unless
//! `[tracing] otlp_endpoint` is set. Each saga event's span continues the W3C trace its record
//! carries (`traceparent`), so a collector shows one trace per order across every hop.

use std::collections::HashMap;

use anyhow::{Context, Result};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use operators::record::Header;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::participants::retention::EVENT_SPAN_TARGET;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to `/v1/traces`.
    /// Unset (the default), nothing is exported.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans, `saga-pipeline` if unset.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// The span exporter and its batch processor, which exports on a thread of its own. Built off
/// any async runtime: the blocking HTTP client must not be made inside one.
pub fn provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let service_name = service_name.to_string();
    std::thread::spawn(move || -> Result<SdkTracerProvider> {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&url)
            .build()
            .with_context(|| format!("building the OTLP exporter to {url}"))?;
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service_name).build())
            .build())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("building the OTLP exporter panicked"))?
}

/// The layer that turns spans into OpenTelemetry spans: the saga events' own (target
/// [`EVENT_SPAN_TARGET`]) and every span at `info` or above, whatever `RUST_LOG` says.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let wanted = Targets::new().with_default(LevelFilter::INFO).with_target(EVENT_SPAN_TARGET, LevelFilter::DEBUG);
    tracing_opentelemetry::layer().with_tracer(provider.tracer("saga-pipeline")).with_filter(wanted)
}

/// Makes `span` a child of the W3C trace in `headers` (`traceparent`), if there is one.
pub fn continue_trace(span: &tracing::Span, headers: &[Header]) {
    let carried = RecordHeaders(
        headers.iter().filter_map(|h| Some((h.key.as_str(), std::str::from_utf8(h.value.as_deref()?).ok()?))).collect(),
    );
    if carried.0.contains_key("traceparent") {
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carried));
    }
}

struct RecordHeaders<'a>(HashMap<&'a str, &'a str>);

impl Extractor for RecordHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).copied()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// One HTTP request's body, answered 200.
    fn collector() -> (String, mpsc::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sent, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 65536];
                while let Ok(read) = stream.read(&mut buffer) {
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                            let _ = sent.send(request[end + 4..end + 4 + length].to_vec());
                            break;
                        }
                    }
                    if read == 0 {
                        break;
                    }
                }
            }
        });
        (url, received)
    }

    #[test]
    fn a_saga_events_span_is_exported_in_the_trace_its_record_carried() {
        let (url, bodies) = collector();
        let provider = provider(&url, "otlp-test").unwrap();
        let subscriber = tracing_subscriber::registry().with(layer(&provider));
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::debug_span!(target: EVENT_SPAN_TARGET, "saga_event", order_id = "order-otlp-1");
            continue_trace(&span, &[Header::new("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))]);
            span.in_scope(|| tracing::info!("handled"));
        });
        provider.force_flush().unwrap();
        let body = bodies.recv_timeout(Duration::from_secs(10)).expect("the collector got the spans");
        let id: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap()).collect();
        assert!(body.windows(16).any(|window| window == id.as_slice()), "the span is in the record's trace");
        assert!(body.windows(12).any(|window| window == b"order-otlp-1"), "with the order id as an attribute");
        assert!(body.windows(9).any(|window| window == b"otlp-test"), "under its service name");
        let _ = provider.shutdown();
    }
}
