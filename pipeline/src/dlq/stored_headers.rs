//! The original headers in the index (`dlq_entries.headers`, jsonb): an array in order, each
//! `{"key": "...", "value": "<base64>" | null}`, so a reprocess publishes them byte for byte,
//! null values and all. Keys are stored as text: librdkafka hands them over as C strings.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use operators::record::Header;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredHeader {
    key: String,
    value: Option<String>,
}

pub fn to_json(headers: &[Header]) -> String {
    let stored = headers
        .iter()
        .map(|header| json!({ "key": header.key, "value": header.value.as_deref().map(|bytes| BASE64.encode(bytes)) }));
    serde_json::Value::Array(stored.collect()).to_string()
}

/// The headers as they were indexed; an error names what is wrong with the stored text.
pub fn from_json(text: &str) -> Result<Vec<Header>, String> {
    let stored: Vec<StoredHeader> =
        serde_json::from_str(text).map_err(|e| format!("stored headers are not readable: {e}"))?;
    stored
        .into_iter()
        .map(|header| match header.value {
            None => Ok(Header::null(header.key)),
            Some(encoded) => BASE64
                .decode(encoded.as_bytes())
                .map(|value| Header::new(header.key.clone(), value))
                .map_err(|e| format!("stored header {:?} is not base64: {e}", header.key)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_survive_the_round_trip_byte_for_byte() {
        let headers = vec![
            Header::new("traceparent", b"00-abc-01".to_vec()),
            Header::null("null-valued"),
            Header::new("empty", Vec::new()),
            Header::new("binary", vec![0x00, 0xff, 0xfe]),
            Header::new("binary", b"a repeated key keeps its place".to_vec()),
        ];
        let text = to_json(&headers);
        assert_eq!(from_json(&text).unwrap(), headers);
        assert!(text.contains(r#"{"key":"null-valued","value":null}"#), "{text}");
        assert!(text.contains(r#"{"key":"empty","value":""}"#), "empty is not null: {text}");
    }

    #[test]
    fn unreadable_stored_headers_are_an_error_not_a_panic() {
        assert!(from_json("{}").is_err());
        assert!(from_json(r#"[{"key": "k", "value": "not base64!"}]"#).unwrap_err().contains("\"k\""));
    }
}
