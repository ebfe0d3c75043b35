//! An entry as the admin API shows it. The payload is the decoded saga event as JSON when it
//! decodes, else its bytes in base64; `payload_encoding` says which. Keys and header values are
//! text when they are UTF-8, else base64, with their own `*_encoding`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use schemas::SagaCodec;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::store::Entry;
use super::stored_headers;
use crate::error_body::ErrorBody;

/// How a payload is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadEncoding {
    /// A tombstone.
    Null,
    /// The decoded saga event.
    Json,
    /// The bytes, because they do not decode.
    Base64,
}

/// How a key or a header value is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BytesEncoding {
    Null,
    Utf8,
    Base64,
}

/// The payload, decoded or not.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    pub encoding: PayloadEncoding,
    pub value: Value,
    /// Why it is shown as base64.
    pub decode_error: Option<String>,
}

/// Decoding may ask the registry for a writer schema it has not seen.
pub async fn payload(codec: &SagaCodec, value: Option<&[u8]>) -> Payload {
    let Some(bytes) = value else {
        return Payload { encoding: PayloadEncoding::Null, value: Value::Null, decode_error: None };
    };
    let decoded = codec
        .decode(bytes)
        .await
        .map_err(|e| e.to_string())
        .and_then(|event| serde_json::to_value(&event).map_err(|e| e.to_string()));
    match decoded {
        Ok(event) => Payload { encoding: PayloadEncoding::Json, value: event, decode_error: None },
        Err(error) => Payload {
            encoding: PayloadEncoding::Base64,
            value: Value::String(BASE64.encode(bytes)),
            decode_error: Some(error),
        },
    }
}

/// Text when the bytes are UTF-8, else base64; `None` is null.
fn bytes(value: Option<&[u8]>) -> (BytesEncoding, Option<String>) {
    match value {
        None => (BytesEncoding::Null, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (BytesEncoding::Utf8, Some(text.to_string())),
            Err(_) => (BytesEncoding::Base64, Some(BASE64.encode(bytes))),
        },
    }
}

/// A dead letter as the admin API shows it. Times are RFC 3339 (UTC); the `dlq.*` header
/// fields are null when the record lacked them.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct EntryView {
    pub id: i64,
    #[schema(value_type = super::entry::Status)]
    pub status: String,
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: Option<i64>,
    /// Milliseconds since the epoch.
    pub original_timestamp: Option<i64>,
    pub consumer_group: Option<String>,
    pub processor: Option<String>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub attempts: Option<i32>,
    pub failed_at: Option<String>,
    pub key_encoding: BytesEncoding,
    pub key: Option<String>,
    pub payload_encoding: PayloadEncoding,
    /// The saga event as JSON, the bytes in base64, or null (see `payload_encoding`).
    pub payload: Value,
    pub payload_decode_error: Option<String>,
    pub status_changed_by: Option<String>,
    pub status_changed_at: Option<String>,
    pub status_reason: Option<String>,
    /// The entry this record was reprocessed from, when it failed again.
    pub reprocessed_from: Option<i64>,
    pub created_at: String,
    /// The original headers, in order; only in the detail view (`GET /admin/dlq/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeadersView>,
}

/// The original headers, or why the stored ones cannot be read.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum HeadersView {
    Headers(Vec<HeaderView>),
    Unreadable(#[schema(inline)] ErrorBody),
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct HeaderView {
    pub key: String,
    pub encoding: BytesEncoding,
    pub value: Option<String>,
}

/// The entry as the API shows it; the detail view (`with_headers`) adds the original headers.
pub fn entry_view(entry: &Entry, payload: Payload, with_headers: bool) -> EntryView {
    let (key_encoding, key) = bytes(entry.key.as_deref());
    let headers = with_headers.then(|| match stored_headers::from_json(&entry.headers) {
        Ok(headers) => HeadersView::Headers(
            headers
                .iter()
                .map(|header| {
                    let (encoding, value) = bytes(header.value.as_deref());
                    HeaderView { key: header.key.clone(), encoding, value }
                })
                .collect(),
        ),
        Err(error) => HeadersView::Unreadable(ErrorBody { error }),
    });
    EntryView {
        id: entry.id,
        status: entry.status.clone(),
        dlq_topic: entry.dlq_topic.clone(),
        dlq_partition: entry.dlq_partition,
        dlq_offset: entry.dlq_offset,
        original_topic: entry.original_topic.clone(),
        original_partition: entry.original_partition,
        original_offset: entry.original_offset,
        original_timestamp: entry.original_timestamp,
        consumer_group: entry.consumer_group.clone(),
        processor: entry.processor.clone(),
        error_class: entry.error_class.clone(),
        error_message: entry.error_message.clone(),
        attempts: entry.attempts,
        failed_at: entry.failed_at.clone(),
        key_encoding,
        key,
        payload_encoding: payload.encoding,
        payload: payload.value,
        payload_decode_error: payload.decode_error,
        status_changed_by: entry.status_changed_by.clone(),
        status_changed_at: entry.status_changed_at.clone(),
        status_reason: entry.status_reason.clone(),
        reprocessed_from: entry.reprocessed_from,
        created_at: entry.created_at.clone(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use operators::record::Header;
    use schemas::{Envelope, OrderConfirmed, Payload as EventPayload, SagaEvent};
    use serde_json::json;

    fn entry(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> Entry {
        Entry {
            id: 7,
            dlq_topic: "order.events.dlq".into(),
            dlq_partition: 1,
            dlq_offset: 3,
            original_topic: "order.events".into(),
            original_partition: 1,
            original_offset: Some(40),
            original_timestamp: Some(1000),
            consumer_group: Some("payment".into()),
            processor: Some("source".into()),
            error_class: Some("poison".into()),
            error_message: Some("bad magic byte".into()),
            attempts: Some(1),
            failed_at: Some("2026-01-01T00:00:00.000Z".into()),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: stored_headers::to_json(headers),
            status: "PENDING".into(),
            status_changed_by: None,
            status_changed_at: None,
            status_reason: None,
            reprocessed_from: None,
            created_at: "2026-01-01T00:00:01.000Z".into(),
        }
    }

    #[tokio::test]
    async fn a_payload_that_is_not_a_saga_event_is_shown_as_base64_with_the_reason() {
        let shown = payload(&SagaCodec::with_fixed_ids(), Some(b"not avro")).await;
        assert_eq!((shown.encoding, shown.value), (PayloadEncoding::Base64, json!("bm90IGF2cm8=")));
        assert!(shown.decode_error.is_some_and(|error| error.contains("magic")));
    }

    #[tokio::test]
    async fn a_saga_event_is_shown_as_json() {
        let codec = SagaCodec::with_fixed_ids();
        let event = SagaEvent::new(
            Envelope::new("order-1", "corr-1", 1_000),
            EventPayload::OrderConfirmed(OrderConfirmed {
                customer_id: "c-1".into(),
                total_cents: 2_500,
                tracking_number: "TRK-1".into(),
            }),
        );
        let bytes = codec.encode("order.events", &event).await.unwrap();
        let shown = payload(&codec, Some(&bytes)).await;
        assert_eq!(shown.encoding, PayloadEncoding::Json, "{:?}", shown.decode_error);
        assert_eq!(shown.value["envelope"]["order_id"], "order-1");
        assert_eq!(shown.value["envelope"]["event_id"], event.envelope.event_id.as_str());
        assert_eq!(shown.value["payload"]["OrderConfirmed"]["tracking_number"], "TRK-1", "{}", shown.value);
    }

    #[tokio::test]
    async fn a_tombstone_is_null() {
        assert_eq!(payload(&SagaCodec::with_fixed_ids(), None).await.encoding, PayloadEncoding::Null);
    }

    #[tokio::test]
    async fn keys_and_header_values_are_text_when_they_can_be() {
        let headers = [Header::new("trace", b"t-1".to_vec()), Header::new("raw", vec![0xff]), Header::null("none")];
        let shown = payload(&SagaCodec::with_fixed_ids(), Some(&[0xff])).await;
        let json = serde_json::to_value(entry_view(&entry(Some(&[0xfe, 0x01]), Some(&[0xff]), &headers), shown, true))
            .unwrap();
        assert_eq!((json["key_encoding"].as_str(), json["key"].as_str()), (Some("base64"), Some("/gE=")));
        assert_eq!(
            json["headers"],
            json!([
                {"key": "trace", "encoding": "utf8", "value": "t-1"},
                {"key": "raw", "encoding": "base64", "value": "/w=="},
                {"key": "none", "encoding": "null", "value": null},
            ])
        );
        let tombstone = Payload { encoding: PayloadEncoding::Null, value: Value::Null, decode_error: None };
        let listed =
            serde_json::to_value(entry_view(&entry(Some(b"order-1"), None, &headers), tombstone, false)).unwrap();
        assert_eq!((listed["key_encoding"].as_str(), listed["key"].as_str()), (Some("utf8"), Some("order-1")));
        assert!(listed.get("headers").is_none(), "the listing leaves the headers to the detail view");
    }
}
