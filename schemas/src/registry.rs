//! A small async client of the Confluent-compatible schema registry API (Apicurio serves it at
//! `<base>/apis/ccompat/v7`), caching what never changes: the id of a schema under a subject
//! and the schema behind an id.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apache_avro::Schema;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Where Apicurio serves the Confluent-compatible API, below its base URL.
const CCOMPAT_PATH: [&str; 3] = ["apis", "ccompat", "v7"];

/// The media type the Confluent API documents for request bodies.
const CONFLUENT_JSON: &str = "application/vnd.schemaregistry.v1+json";
/// Apicurio's extension of the ccompat API that puts a call in one artifact group.
const GROUP_HEADER: &str = "X-Registry-GroupId";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A failed registry call, or an answer this client cannot use.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry base URL {url:?} is not usable: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("cannot reach the schema registry: {request}: {}", error_chain(.source))]
    Unreachable {
        request: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "schema registry refused the schema for subject {subject:?} as incompatible with earlier versions: {message}"
    )]
    Incompatible { subject: String, message: String },
    #[error("schema registry has no schema with id {id}")]
    SchemaNotFound { id: u32 },
    #[error("schema registry answered {status} to {request} (error code {}): {message}",
        error_code.map_or_else(|| "none".to_string(), |code| code.to_string()))]
    Rejected { request: String, status: StatusCode, error_code: Option<i64>, message: String },
    #[error("schema registry sent an unreadable answer to {request}: {detail}")]
    BadResponse { request: String, detail: String },
    #[error("schema {id} from the registry is not an Avro schema this client can use: {detail}")]
    UnusableSchema { id: u32, detail: String },
}

impl RegistryError {
    /// An unreachable or failing registry may answer next time; an id it does not have, a schema
    /// it holds that we cannot use, or a refusal will not change by asking again.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::BadResponse { .. } => true,
            RegistryError::Rejected { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

/// A subject's compatibility level: which earlier versions a new version must stay readable with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl fmt::Display for Compatibility {
    /// The API's spelling, e.g. `FULL_TRANSITIVE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => write!(f, "{self:?}"),
        }
    }
}

/// Client of one registry. Share one per process: the caches live in it.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    api: Url,
    /// Tries per call when the registry cannot be reached or fails (5xx); 1 unless
    /// [`RegistryClient::retrying`].
    attempts: u32,
    /// Apicurio's artifact group the subjects live in; its default group unless
    /// [`RegistryClient::in_group`].
    group: Option<String>,
    ids_by_subject_and_schema: Mutex<HashMap<(String, String), u32>>,
    schemas_by_id: Mutex<HashMap<u32, Arc<Schema>>>,
}

/// The error body of the Confluent API (Apicurio's ccompat API uses the same shape).
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct RegisteredId {
    id: u32,
}

#[derive(Deserialize)]
struct CompatibilityAnswer {
    is_compatible: bool,
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

impl RegistryClient {
    /// A client of the registry at `base_url`, e.g. `http://127.0.0.1:8081`; the ccompat path is
    /// appended.
    pub fn new(base_url: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidBaseUrl { url: base_url.to_string(), reason };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("expected an http:// or https:// URL".to_string()));
        }
        let api = with_segments(&base, &CCOMPAT_PATH);
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| invalid(error_chain(&e)))?;
        Ok(RegistryClient {
            http,
            api,
            attempts: 1,
            group: None,
            ids_by_subject_and_schema: Mutex::default(),
            schemas_by_id: Mutex::default(),
        })
    }

    /// The same client, trying each call up to `attempts` times (backing off 0.5 s, 1 s, 2 s, …)
    /// while the registry is unreachable or answers 5xx: for one-off commands such as
    /// `pipeline schemas register`, run right after the registry started. Every call of this
    /// client is idempotent. Not for a stream thread, which must not wait that long.
    pub fn retrying(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The API root, `<base>/apis/ccompat/v7`.
    /// The same client, with its subjects in Apicurio's artifact group `group` (the
    /// `X-Registry-GroupId` header of the ccompat API): pipelines that share one registry keep
    /// their subjects apart. A group no one registered in holds no subject at all.
    pub fn in_group(mut self, group: &str) -> Self {
        self.group = Some(group.to_string());
        self
    }

    pub fn api_url(&self) -> &Url {
        &self.api
    }

    /// Registers an Avro schema under `subject` (a no-op if it is already there) and returns its
    /// id, the one to put in the wire format.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_string(), schema.to_string());
        if let Some(&id) = lock(&self.ids_by_subject_and_schema).get(&key) {
            return Ok(id);
        }
        let url = self.url(&["subjects", subject, "versions"]);
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        let RegisteredId { id } = self.call(Method::POST, url, Some(body)).await.map_err(|e| match e {
            RegistryError::Rejected { status: StatusCode::CONFLICT, message, .. } => {
                RegistryError::Incompatible { subject: subject.to_string(), message }
            }
            other => other,
        })?;
        lock(&self.ids_by_subject_and_schema).insert(key, id);
        Ok(id)
    }

    /// The id of `schema` under `subject` if it is registered there, without registering it:
    /// what a producer asks at start-up.
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<u32>, RegistryError> {
        let key = (subject.to_string(), schema.to_string());
        if let Some(&id) = lock(&self.ids_by_subject_and_schema).get(&key) {
            return Ok(Some(id));
        }
        let url = self.url(&["subjects", subject]);
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        match self.call::<RegisteredId>(Method::POST, url, Some(body)).await {
            Ok(RegisteredId { id }) => {
                lock(&self.ids_by_subject_and_schema).insert(key, id);
                Ok(Some(id))
            }
            // 40401: no such subject; 40403: the subject has no such schema.
            Err(RegistryError::Rejected { status: StatusCode::NOT_FOUND, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Whether the registry would accept `schema` as the next version of `subject` under the
    /// subject's level, checked against every version it holds (`POST
    /// /compatibility/subjects/{s}/versions`). A subject with no versions accepts anything.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryError> {
        let url = self.url(&["compatibility", "subjects", subject, "versions"]);
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        match self.call::<CompatibilityAnswer>(Method::POST, url, Some(body)).await {
            Ok(answer) => Ok(answer.is_compatible),
            Err(RegistryError::Rejected { status: StatusCode::NOT_FOUND, .. }) => Ok(true),
            Err(other) => Err(other),
        }
    }

    /// Deletes a subject and all its versions for good (soft delete, then permanent), e.g. a
    /// scratch subject; an unknown subject is not an error.
    pub async fn delete_subject(&self, subject: &str) -> Result<(), RegistryError> {
        for permanent in [false, true] {
            let mut url = self.url(&["subjects", subject]);
            if permanent {
                url.query_pairs_mut().append_pair("permanent", "true");
            }
            match self.call::<serde_json::Value>(Method::DELETE, url, None).await {
                Ok(_) | Err(RegistryError::Rejected { status: StatusCode::NOT_FOUND, .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// The schema a wire-format id stands for.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(schema) = lock(&self.schemas_by_id).get(&id) {
            return Ok(Arc::clone(schema));
        }
        let url = self.url(&["schemas", "ids", &id.to_string()]);
        let found: SchemaById = self.call(Method::GET, url, None).await.map_err(|e| match e {
            RegistryError::Rejected { status: StatusCode::NOT_FOUND, .. } => RegistryError::SchemaNotFound { id },
            other => other,
        })?;
        // The Confluent API leaves schemaType out for Avro.
        if let Some(other) = found.schema_type.filter(|kind| kind != "AVRO") {
            return Err(RegistryError::UnusableSchema { id, detail: format!("it is a {other} schema") });
        }
        let schema = Schema::parse_str(&found.schema)
            .map_err(|e| RegistryError::UnusableSchema { id, detail: e.to_string() })?;
        let schema = Arc::new(schema);
        lock(&self.schemas_by_id).insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    /// Sets the compatibility level the registry checks new versions of `subject` against.
    pub async fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<(), RegistryError> {
        let url = self.url(&["config", subject]);
        let _echo: serde_json::Value = self.call(Method::PUT, url, Some(json!({ "compatibility": level }))).await?;
        Ok(())
    }

    fn url(&self, segments: &[&str]) -> Url {
        with_segments(&self.api, segments)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<T, RegistryError> {
        let mut backoff = Duration::from_millis(500);
        for _ in 1..self.attempts {
            match self.call_once(method.clone(), url.clone(), body.clone()).await {
                Err(RegistryError::Unreachable { .. }) => {}
                Err(RegistryError::Rejected { status, .. }) if status.is_server_error() => {}
                done => return done,
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        self.call_once(method, url, body).await
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<T, RegistryError> {
        let request_line = format!("{method} {url}");
        let mut request = self.http.request(method, url);
        if let Some(group) = &self.group {
            request = request.header(GROUP_HEADER, group);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, CONFLUENT_JSON).body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable { request: request_line.clone(), source })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| RegistryError::BadResponse { request: request_line.clone(), detail: error_chain(&e) })?;
        if !status.is_success() {
            let parsed = serde_json::from_str::<ErrorBody>(&text).ok();
            let error_code = parsed.as_ref().and_then(|body| body.error_code);
            let message = parsed.and_then(|body| body.message).unwrap_or(text);
            return Err(RegistryError::Rejected { request: request_line, status, error_code, message });
        }
        serde_json::from_str(&text)
            .map_err(|e| RegistryError::BadResponse { request: request_line, detail: format!("{e} in {text:?}") })
    }
}

/// `base` with `segments` appended, each percent-encoded so that any subject name stays one
/// segment. `new` only accepts URLs that can be a base, for which `path_segments_mut` succeeds.
fn with_segments(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A cache is still valid after a panic elsewhere: entries are inserted whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error with its causes, `: `-separated: reqwest hides the cause ("connection refused") and
/// apache-avro nests a field's own problem, both in `source()`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_lives_under_the_ccompat_path() {
        for base in ["http://127.0.0.1:8081", "http://127.0.0.1:8081/"] {
            let client = RegistryClient::new(base).unwrap();
            assert_eq!(client.api_url().as_str(), "http://127.0.0.1:8081/apis/ccompat/v7");
        }
        let behind_a_proxy = RegistryClient::new("http://host/registry").unwrap();
        assert_eq!(behind_a_proxy.api_url().as_str(), "http://host/registry/apis/ccompat/v7");
    }

    #[test]
    fn subjects_become_one_encoded_path_segment() {
        let client = RegistryClient::new("http://127.0.0.1:8081").unwrap();
        let url = client.url(&["subjects", "order.events-saga.events.OrderPlaced", "versions"]);
        assert_eq!(url.path(), "/apis/ccompat/v7/subjects/order.events-saga.events.OrderPlaced/versions");
        let odd = client.url(&["config", "a/b c"]);
        assert_eq!(odd.path(), "/apis/ccompat/v7/config/a%2Fb%20c");
    }

    #[test]
    fn unusable_base_urls_are_refused() {
        for base in ["", "127.0.0.1:8081", "mailto:registry@example.com", "ftp://host"] {
            let error = RegistryClient::new(base).expect_err(base);
            assert!(matches!(error, RegistryError::InvalidBaseUrl { .. }), "{base}: {error}");
        }
    }

    #[test]
    fn compatibility_levels_use_the_api_spelling() {
        assert_eq!(json!(Compatibility::Backward), json!("BACKWARD"));
        assert_eq!(json!(Compatibility::FullTransitive), json!("FULL_TRANSITIVE"));
    }

    /// A registry stand-in that answers 503 to its first `failures` requests, then `{"id": 7}`.
    fn flaky_registry(failures: usize) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (served, socket) in listener.incoming().enumerate() {
                let Ok(mut socket) = socket else { return };
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request);
                let (status, body) =
                    if served < failures { ("503 Service Unavailable", "{}") } else { ("200 OK", r#"{"id": 7}"#) };
                let answer = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(answer.as_bytes());
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_retrying_client_outlasts_a_registry_that_fails_at_first_and_a_plain_one_does_not() {
        let plain = RegistryClient::new(&flaky_registry(1)).unwrap();
        let error = plain.register("s", "{}").await.expect_err("one try, and it fails");
        assert!(matches!(error, RegistryError::Rejected { status: StatusCode::SERVICE_UNAVAILABLE, .. }), "{error}");

        let retrying = RegistryClient::new(&flaky_registry(2)).unwrap().retrying(3);
        assert_eq!(retrying.register("s", "{}").await.unwrap(), 7);
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_a_typed_error_naming_the_cause() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = RegistryClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let error = client.schema_by_id(1).await.expect_err("nothing listens");
        assert!(matches!(error, RegistryError::Unreachable { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("cannot reach the schema registry"), "{message}");
        assert!(message.to_lowercase().contains("refused"), "{message}");
    }
}
