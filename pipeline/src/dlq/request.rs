//! What the DLQ admin API accepts, validated by hand so every refusal says what was wrong:
//! listing parameters, entry ids and the JSON bodies of reprocess and discard.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::entry::{ErrorClass, Status};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
pub const DEFAULT_BULK_LIMIT: i64 = 100;
/// Kafka's own limit on a topic name.
const MAX_TOPIC_LEN: usize = 249;
const MAX_OPERATOR_LEN: usize = 255;
const MAX_REASON_LEN: usize = 2_000;

/// A request refused with 400, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

// The schemas' bounds below repeat the checks of this module, so the OpenAPI document shows
// what is accepted; the checks stay the authority. Free text (operator, reason) is not blank and
// holds no NUL (`text_input::free_text`).

/// `GET /admin/dlq` parameters as sent (text).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The original topic.
    #[param(min_length = 1, max_length = 249, pattern = "^[a-zA-Z0-9._-]+$")]
    pub topic: Option<String>,
    #[param(value_type = Option<ErrorClass>)]
    pub error_class: Option<String>,
    #[param(value_type = Option<Status>)]
    pub status: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub cursor: Option<String>,
}

/// Which entries to list, validated. `after_id` is the cursor: the last id of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListFilter {
    pub topic: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub status: Option<Status>,
    pub limit: i64,
    pub after_id: Option<i64>,
}

pub fn list_filter(params: ListParams) -> Result<ListFilter, BadRequest> {
    Ok(ListFilter {
        topic: params.topic.map(topic).transpose()?,
        error_class: params.error_class.map(|text| error_class(&text)).transpose()?,
        status: params.status.map(|text| status(&text)).transpose()?,
        limit: params.limit.map(|text| bounded("limit", &text, 1, MAX_LIMIT)).transpose()?.unwrap_or(DEFAULT_LIMIT),
        after_id: params.cursor.map(|text| bounded("cursor", &text, 0, i64::MAX)).transpose()?,
    })
}

/// An entry id from the path.
pub fn entry_id(text: &str) -> Result<i64, BadRequest> {
    bounded("the entry id", text, 1, i64::MAX)
}

/// `POST /admin/dlq/{id}/reprocess`: the body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprocessBody {
    /// Who acts ("unknown" when left out).
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub operator: Option<String>,
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub reason: Option<String>,
}

/// `POST /admin/dlq/reprocess`: which PENDING entries (all filters must match).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReprocessBody {
    /// The original topic.
    #[schema(min_length = 1, max_length = 249, pattern = "^[a-zA-Z0-9._-]+$")]
    pub topic: Option<String>,
    #[schema(value_type = Option<ErrorClass>)]
    pub error_class: Option<String>,
    /// Positive entry ids.
    #[schema(min_items = 1, max_items = 500)]
    pub ids: Option<Vec<i64>>,
    /// At most this many entries (100 when left out).
    #[schema(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub operator: Option<String>,
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub reason: Option<String>,
}

/// Which PENDING entries a bulk reprocess takes on, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkFilter {
    pub topic: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub ids: Option<Vec<i64>>,
    pub limit: i64,
}

pub fn bulk_filter(body: &BulkReprocessBody) -> Result<BulkFilter, BadRequest> {
    let limit = body.limit.unwrap_or(DEFAULT_BULK_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(BadRequest(format!("limit must be an integer from 1 to {MAX_LIMIT}, got {limit}")));
    }
    if let Some(ids) = &body.ids {
        if ids.is_empty() || ids.len() > MAX_LIMIT as usize {
            return Err(BadRequest(format!("ids must list 1 to {MAX_LIMIT} entry ids")));
        }
        if let Some(bad) = ids.iter().find(|id| **id < 1) {
            return Err(BadRequest(format!("ids must be positive, got {bad}")));
        }
    }
    Ok(BulkFilter {
        topic: body.topic.clone().map(topic).transpose()?,
        error_class: body.error_class.as_deref().map(error_class).transpose()?,
        ids: body.ids.clone(),
        limit,
    })
}

/// `POST /admin/dlq/{id}/discard`: a reason is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscardBody {
    // Required, but an Option so that its absence gets a message saying so.
    /// Why the entry is given up on.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub reason: Option<String>,
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub operator: Option<String>,
}

/// Who acts and why, validated; "unknown" when the body names nobody.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub operator: String,
    pub reason: Option<String>,
}

pub fn actor(operator: Option<&str>, reason: Option<&str>, reason_required: bool) -> Result<Actor, BadRequest> {
    let operator = match operator {
        None => "unknown".to_string(),
        Some(operator) => free_text("operator", operator, MAX_OPERATOR_LEN)?,
    };
    let reason = match reason {
        None if reason_required => return Err(BadRequest("reason is required: say why".into())),
        None => None,
        Some(reason) => Some(free_text("reason", reason, MAX_REASON_LEN)?),
    };
    Ok(Actor { operator, reason })
}

/// A JSON body; `empty_is_default` lets a call without a body stand for `{}`.
pub fn json_body<T: DeserializeOwned + Default>(bytes: &[u8], empty_is_default: bool) -> Result<T, BadRequest> {
    if empty_is_default && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| BadRequest(format!("the body is not the JSON expected: {e}")))
}

fn topic(text: String) -> Result<String, BadRequest> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty() || text.len() > MAX_TOPIC_LEN || !text.chars().all(legal) {
        return Err(BadRequest(format!(
            "topic must be a Kafka topic name (1 to {MAX_TOPIC_LEN} of a-z A-Z 0-9 . _ -)"
        )));
    }
    Ok(text)
}

fn error_class(text: &str) -> Result<ErrorClass, BadRequest> {
    ErrorClass::parse(text).ok_or_else(|| {
        let known: Vec<&str> = ErrorClass::ALL.iter().map(|class| class.as_str()).collect();
        BadRequest(format!("error_class {text:?} is not one of {}", known.join(", ")))
    })
}

fn status(text: &str) -> Result<Status, BadRequest> {
    Status::parse(text).ok_or_else(|| {
        let known: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
        BadRequest(format!("status {text:?} is not one of {}", known.join(", ")))
    })
}

fn free_text(name: &str, text: &str, max_len: usize) -> Result<String, BadRequest> {
    crate::text_input::free_text(name, text, max_len).map_err(BadRequest)?;
    Ok(text.to_string())
}

fn bounded(name: &str, text: &str, min: i64, max: i64) -> Result<i64, BadRequest> {
    text.parse::<i64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| BadRequest(format!("{name} must be an integer from {min} to {max}, got {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ListParams {
        let get = |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string());
        ListParams {
            topic: get("topic"),
            error_class: get("error_class"),
            status: get("status"),
            limit: get("limit"),
            cursor: get("cursor"),
        }
    }

    fn refusal<T: std::fmt::Debug>(result: Result<T, BadRequest>) -> String {
        match result {
            Err(BadRequest(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn listing_parameters_default_and_parse() {
        let filter = list_filter(ListParams::default()).unwrap();
        assert_eq!(
            filter,
            ListFilter { topic: None, error_class: None, status: None, limit: DEFAULT_LIMIT, after_id: None }
        );
        let filter = list_filter(params(&[
            ("topic", "order.events"),
            ("error_class", "poison"),
            ("status", "PENDING"),
            ("limit", "500"),
            ("cursor", "41"),
        ]))
        .unwrap();
        assert_eq!(
            filter,
            ListFilter {
                topic: Some("order.events".into()),
                error_class: Some(ErrorClass::Poison),
                status: Some(Status::Pending),
                limit: 500,
                after_id: Some(41)
            }
        );
    }

    #[test]
    fn bad_listing_parameters_are_refused_with_what_was_wrong() {
        assert_eq!(
            refusal(list_filter(params(&[("limit", "501")]))),
            "limit must be an integer from 1 to 500, got \"501\""
        );
        assert_eq!(
            refusal(list_filter(params(&[("limit", "0")]))),
            "limit must be an integer from 1 to 500, got \"0\""
        );
        assert!(refusal(list_filter(params(&[("cursor", "-1")]))).starts_with("cursor must be an integer"));
        assert!(refusal(list_filter(params(&[("cursor", "x")]))).starts_with("cursor must be an integer"));
        assert_eq!(
            refusal(list_filter(params(&[("status", "pending")]))),
            "status \"pending\" is not one of PENDING, REPROCESSED, DISCARDED"
        );
        assert_eq!(
            refusal(list_filter(params(&[("error_class", "fatal")]))),
            "error_class \"fatal\" is not one of transient, permanent, poison"
        );
        assert!(refusal(list_filter(params(&[("topic", "")]))).starts_with("topic must be"));
        assert!(
            refusal(list_filter(params(&[("topic", "a\0b")]))).starts_with("topic must be"),
            "no NUL reaches PostgreSQL"
        );
    }

    #[test]
    fn entry_ids_are_positive_integers() {
        assert_eq!(entry_id("7"), Ok(7));
        for bad in ["0", "-3", "abc", "1.5", "", "99999999999999999999"] {
            assert!(entry_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bodies_parse_or_are_refused() {
        let empty: ReprocessBody = json_body(b"", true).unwrap();
        assert_eq!((empty.operator, empty.reason), (None, None));
        assert!(refusal(json_body::<ReprocessBody>(b"{", true)).starts_with("the body is not the JSON expected"));
        assert!(json_body::<ReprocessBody>(br#"{"operatr": "x"}"#, true).is_err(), "unknown fields are refused");
        assert!(json_body::<BulkReprocessBody>(br#"{"ids": [1, "two"]}"#, false).is_err());
        assert!(json_body::<BulkReprocessBody>(b"", false).is_err(), "a required body");
    }

    #[test]
    fn bulk_filters_default_and_bound() {
        let filter = bulk_filter(&BulkReprocessBody::default()).unwrap();
        assert_eq!(filter, BulkFilter { topic: None, error_class: None, ids: None, limit: DEFAULT_BULK_LIMIT });
        let body =
            BulkReprocessBody { ids: Some(vec![3, 1]), error_class: Some("transient".into()), ..Default::default() };
        assert_eq!(bulk_filter(&body).unwrap().ids, Some(vec![3, 1]));
        for body in [
            BulkReprocessBody { limit: Some(0), ..Default::default() },
            BulkReprocessBody { limit: Some(501), ..Default::default() },
            BulkReprocessBody { ids: Some(vec![]), ..Default::default() },
            BulkReprocessBody { ids: Some(vec![1, 0]), ..Default::default() },
            BulkReprocessBody { error_class: Some("other".into()), ..Default::default() },
            BulkReprocessBody { topic: Some("white space".into()), ..Default::default() },
        ] {
            assert!(bulk_filter(&body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn who_acts_and_why() {
        assert_eq!(actor(None, None, false), Ok(Actor { operator: "unknown".into(), reason: None }));
        assert_eq!(
            actor(Some("ops"), Some("fixed"), true),
            Ok(Actor { operator: "ops".into(), reason: Some("fixed".into()) })
        );
        assert_eq!(refusal(actor(Some("ops"), None, true)), "reason is required: say why");
        assert!(actor(Some("ops"), Some("  "), true).is_err(), "a blank reason says nothing");
        assert!(actor(Some(""), None, false).is_err());
        assert!(actor(Some("ops"), Some(&"x".repeat(2_001)), false).is_err());
        assert!(actor(Some("o\0ps"), None, false).is_err());
    }
}
