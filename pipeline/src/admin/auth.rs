//! The one bearer-token check of every operator call: `/admin/dlq/*` on the admin port and the
//! order service's `POST /admin/orders/{id}/intervention`. The token is never logged: this type
//! does not print it, and a refusal says only that the token was missing or wrong.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::audit::AdminAction;
use crate::error_body::error_response;

/// The configured token, or none (operator calls disabled). Cheap to clone.
#[derive(Clone, Default)]
pub struct AdminToken(Option<Arc<str>>);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "AdminToken(set)" } else { "AdminToken(unset)" })
    }
}

/// Why an operator call is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token is configured: 503, the calls are switched off.
    Disabled,
    /// Missing, malformed or wrong: 401.
    Unauthorized,
}

impl AdminToken {
    /// An empty token counts as none.
    pub fn new(token: Option<String>) -> Self {
        AdminToken(token.filter(|token| !token.is_empty()).map(Arc::from))
    }

    /// `Authorization: Bearer <token>`, compared in constant time: both sides are hashed first,
    /// so not even the length of the expected token shows in the time taken.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = self.0.as_deref() else { return Err(Refusal::Disabled) };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(Refusal::Unauthorized)?;
        let (given, expected) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
        let difference = given.iter().zip(expected.iter()).fold(0u8, |difference, (a, b)| difference | (a ^ b));
        if difference == 0 {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Disabled => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "operator calls are disabled: set admin.token (SAGA__ADMIN__TOKEN) or admin.token_file",
            ),
            Refusal::Unauthorized => {
                let mut response = error_response(
                    StatusCode::UNAUTHORIZED,
                    "an operator call needs Authorization: Bearer <admin token>",
                );
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
        }
    }
}

/// Middleware for operator routes: runs before the handler's extractors, so an unauthenticated
/// caller learns nothing about the request (not even that its body is malformed).
pub async fn require_admin_token(State(token): State<AdminToken>, request: Request, next: Next) -> Response {
    match token.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let action = format!("{} {}", request.method(), request.uri().path());
            let outcome = match refusal {
                Refusal::Disabled => "disabled",
                Refusal::Unauthorized => "unauthorized",
            };
            AdminAction { operator: "unknown", action: &action, ids: "", outcome }.emit();
            refusal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().expect("a header value"));
        headers
    }

    #[test]
    fn operator_calls_need_the_configured_token() {
        let token = AdminToken::new(Some("s3cret".into()));
        assert_eq!(token.check(&bearer("Bearer s3cret")), Ok(()));
        assert_eq!(token.check(&HeaderMap::new()), Err(Refusal::Unauthorized), "missing");
        assert_eq!(token.check(&bearer("Bearer s3cre")), Err(Refusal::Unauthorized), "a prefix");
        assert_eq!(token.check(&bearer("Bearer s3cretX")), Err(Refusal::Unauthorized), "longer");
        assert_eq!(token.check(&bearer("Basic s3cret")), Err(Refusal::Unauthorized), "another scheme");
        assert_eq!(token.check(&bearer("s3cret")), Err(Refusal::Unauthorized), "no scheme");
    }

    #[test]
    fn without_a_token_operator_calls_are_disabled() {
        assert_eq!(AdminToken::new(None).check(&bearer("Bearer x")), Err(Refusal::Disabled));
        assert_eq!(
            AdminToken::new(Some(String::new())).check(&bearer("Bearer ")),
            Err(Refusal::Disabled),
            "empty is unset"
        );
    }

    #[test]
    fn the_token_never_prints() {
        let printed = format!("{:?}", AdminToken::new(Some("s3cret".into())));
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}
