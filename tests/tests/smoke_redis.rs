//! Redis: an atomic set-if-absent with a TTL (`SET key value NX PX ttl`) behaves as documented.

use std::time::Duration;

use integration_tests::stack::{redis_url, unique};

#[tokio::test]
async fn set_if_absent_with_ttl_is_atomic_and_expires() {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis is down or refuses connections: {e} (`dev/stack status`)"));
    let key = unique("smoke:idempotency");

    let set_nx = |value: &'static str| {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(value).arg("NX").arg("PX").arg(800);
        cmd
    };

    let first: Option<String> = set_nx("first").query_async(&mut conn).await.expect("SET NX");
    assert_eq!(first.as_deref(), Some("OK"), "the first SET NX must win");

    let second: Option<String> = set_nx("second").query_async(&mut conn).await.expect("SET NX");
    assert_eq!(second, None, "a second SET NX on a live key must not write");

    let value: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(value.as_deref(), Some("first"));

    let ttl_ms: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!((1..=800).contains(&ttl_ms), "the key must carry the TTL it was set with, got {ttl_ms} ms");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(expired, None, "the key must expire after its TTL");

    let after_expiry: Option<String> = set_nx("third").query_async(&mut conn).await.expect("SET NX");
    assert_eq!(after_expiry.as_deref(), Some("OK"), "after expiry the key can be taken again");
}
