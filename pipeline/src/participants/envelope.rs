//! Building the events a participant emits: a new id, the cause's order and saga run, and the
//! mirrored Kafka headers.

use operators::record::{Header, Record};
use schemas::{Envelope, Payload, SagaEvent};

/// The W3C trace context header, passed on from cause to effect.
const TRACEPARENT: &str = "traceparent";

/// An event reacting to `cause`: same order and correlation id, `causation_id` = the cause's
/// event id, and a random (v4) event id as the saga contract asks.
pub(crate) fn reply(cause: &Envelope, payload: Payload, now_ms: i64) -> SagaEvent {
    let mut envelope = Envelope::caused_by(cause, now_ms);
    envelope.event_id = uuid::Uuid::new_v4().to_string();
    SagaEvent::new(envelope, payload)
}

/// The cause's `traceparent`, if it had one.
pub(crate) fn traceparent(headers: &[Header]) -> Option<String> {
    let header = headers.iter().find(|header| header.key == TRACEPARENT)?;
    std::str::from_utf8(header.value.as_deref()?).ok().map(str::to_owned)
}

/// The headers of a cause that carried only `traceparent`.
pub(crate) fn trace_headers(traceparent: Option<&str>) -> Vec<Header> {
    traceparent.map(|traceparent| Header::new(TRACEPARENT, traceparent)).into_iter().collect()
}

/// The record carrying `event`: keyed by order id, with headers mirroring the envelope and the
/// cause's `traceparent`, if it had one.
pub(crate) fn event_record(event: SagaEvent, timestamp_ms: i64, cause_headers: &[Header]) -> Record<String, SagaEvent> {
    let envelope = &event.envelope;
    let mut headers = vec![
        Header::new("event_id", envelope.event_id.as_str()),
        Header::new("event_type", event.event_type().as_str()),
        Header::new("correlation_id", envelope.correlation_id.as_str()),
    ];
    if let Some(causation_id) = &envelope.causation_id {
        headers.push(Header::new("causation_id", causation_id.as_str()));
    }
    headers.extend(cause_headers.iter().filter(|header| header.key == TRACEPARENT).cloned());
    Record::new(envelope.order_id.clone(), event, timestamp_ms).with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{current_version_of, EventType, ShipmentFailed};

    #[test]
    fn a_reply_continues_the_saga_run_of_its_cause_with_a_new_v4_id() {
        let cause = Envelope::new("order-1", "corr-1", 1_000);
        let event = reply(&cause, Payload::ShipmentFailed(ShipmentFailed { reason: "x".into() }), 2_000);
        let id = uuid::Uuid::parse_str(&event.envelope.event_id).expect("a uuid");
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(event.envelope.order_id, "order-1");
        assert_eq!(event.envelope.correlation_id, "corr-1");
        assert_eq!(event.envelope.causation_id.as_deref(), Some(cause.event_id.as_str()));
        assert_eq!(
            (event.envelope.occurred_at, event.envelope.schema_version),
            (2_000, current_version_of(EventType::ShipmentFailed))
        );
    }

    #[test]
    fn records_are_keyed_by_order_and_mirror_the_envelope_in_headers() {
        let cause = Envelope::new("order-1", "corr-1", 1_000);
        let event = reply(&cause, Payload::ShipmentFailed(ShipmentFailed { reason: "x".into() }), 2_000);
        let inherited = [Header::new("traceparent", "00-abc-def-01"), Header::new("other", "dropped")];
        let record = event_record(event.clone(), 5, &inherited);
        assert_eq!((record.key.as_str(), record.timestamp_ms), ("order-1", 5));
        let header = |name: &str| {
            record.headers.iter().find(|h| h.key == name).map(|h| String::from_utf8_lossy(h.value_bytes()).into_owned())
        };
        assert_eq!(header("event_id"), Some(event.envelope.event_id.clone()));
        assert_eq!(header("event_type").as_deref(), Some("ShipmentFailed"));
        assert_eq!(header("correlation_id").as_deref(), Some("corr-1"));
        assert_eq!(header("causation_id"), Some(cause.event_id));
        assert_eq!(header("traceparent").as_deref(), Some("00-abc-def-01"));
        assert_eq!(header("other"), None);
    }
}
