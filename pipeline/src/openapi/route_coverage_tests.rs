//! Every route each port's router serves is in that port's OpenAPI document, and every operation
//! of the document is served: the two cannot drift apart.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::Response;
use axum::Router;
use tower::ServiceExt;
use utoipa::openapi::OpenApi as Document;

use super::test_routers::{admin, order_api, TOKEN};

const METHODS: [Method; 6] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

/// The paths `router` serves. axum has no API that lists them, but its `Debug` output names
/// each one (`path_router: … RouteId(n): "/path" …, fallback_router: …`); should that format
/// change, this finds none and the tests fail rather than pass unchecked.
fn served_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let Some((routes, _fallbacks)) = debug.split_once(", fallback_router:") else { return BTreeSet::new() };
    routes
        .split("RouteId(")
        .filter_map(|part| part.split_once("): \""))
        .filter(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|(_, rest)| rest.split_once('"').map(|(path, _)| path.to_string()))
        .collect()
}

/// Records which route answered, so a handler's own 404 is told apart from no route at all.
async fn matched_path_header(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(Ok(path)) = matched.map(|matched| HeaderValue::from_str(matched.as_str())) {
        response.headers_mut().insert("x-matched-path", path);
    }
    response
}

/// The (method, path) pairs `router` answers: every method tried on every path it knows, with
/// the admin token (else the token check answers 401 for any method) and a path parameter each
/// handler refuses before it uses its state.
async fn served_operations(router: Router) -> BTreeSet<(String, String)> {
    let router = router.layer(from_fn(matched_path_header));
    let mut served = BTreeSet::new();
    for path in served_paths(&router) {
        for method in METHODS {
            let uri = path.replace("{id}", "probe%00");
            let request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            let matched = response.headers().get("x-matched-path").and_then(|value| value.to_str().ok());
            assert_eq!(matched, Some(path.as_str()), "{method} {uri} answered {} by no route", response.status());
            served.insert((method.to_string(), path.clone()));
        }
    }
    served
}

fn documented_operations(document: &Document) -> BTreeSet<(String, String)> {
    let json = serde_json::to_value(document).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in json["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    documented
}

#[tokio::test]
async fn the_order_api_serves_exactly_what_its_document_lists() {
    let served = served_operations(order_api()).await;
    assert!(served.contains(&("POST".into(), "/orders".into())), "the probe finds routes: {served:?}");
    assert_eq!(served, documented_operations(&super::order_api()));
}

#[tokio::test]
async fn the_admin_port_serves_exactly_what_its_document_lists() {
    let served = served_operations(admin()).await;
    assert!(served.contains(&("GET".into(), "/admin/dlq".into())), "the probe finds routes: {served:?}");
    assert_eq!(served, documented_operations(&super::admin_api()));
}
