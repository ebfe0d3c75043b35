//! A path parameter that is not UTF-8 once percent-decoded (`%FF`) is refused like any bad
//! request: a 4xx with the JSON error body, on every route of both ports that takes one.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, Method};
use axum::Router;
use tower::ServiceExt;

use super::test_routers::{admin, order_api, TOKEN};
use super::{admin_api, order_api as order_api_document};

async fn refuse_non_utf8_ids(router: Router, document: utoipa::openapi::OpenApi) {
    let document = serde_json::to_value(document).unwrap();
    let mut tried = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let request = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(path.replace("{id}", "%FF"))
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|json| json["error"].as_str().map(str::to_owned));
            assert!(
                status.is_client_error() && error.is_some(),
                "{method} {path} with %FF: {status} {}",
                String::from_utf8_lossy(&body)
            );
            tried += 1;
        }
    }
    assert!(tried > 0, "no route with an id");
}

#[tokio::test]
async fn the_order_api_refuses_a_non_utf8_id_with_a_json_400() {
    refuse_non_utf8_ids(order_api(), order_api_document()).await;
}

#[tokio::test]
async fn the_admin_port_refuses_a_non_utf8_id_with_a_json_400() {
    refuse_non_utf8_ids(admin(), admin_api()).await;
}
