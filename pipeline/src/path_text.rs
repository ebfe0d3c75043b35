//! A route's one path parameter as text. axum's own `Path<String>` refuses a parameter that is
//! not UTF-8 once percent-decoded (`/orders/%FF`) with a text/plain 400; this one refuses it with
//! the JSON error body, like every other refusal of the APIs.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::Response;

use crate::error_body::error_response;

pub struct PathText(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(text)) => Ok(PathText(text)),
            Err(rejection) => Err(error_response(rejection.status(), rejection.body_text())),
        }
    }
}
