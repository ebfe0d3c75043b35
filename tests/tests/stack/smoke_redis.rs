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

/// The one idempotency guard of `operators`, blocking and async, against the real Redis.
#[tokio::test(flavor = "multi_thread")]
async fn the_idempotency_guard_leases_completes_and_takes_over_an_expired_lease() {
    use operators::idempotency::{AsyncIdempotencyGuard, Claim, GuardConfig, IdempotencyGuard};
    let config = GuardConfig { lease: Duration::from_millis(400), ..GuardConfig::new(unique("smoke-guard")) };
    let guard = AsyncIdempotencyGuard::connect(&redis_url(), config.clone()).await.expect("connect");
    let Ok(Claim::Acquired(first)) = guard.claim("k", Some("body-1")).await else { panic!("a free key is ours") };
    assert_eq!(guard.claim("k", Some("body-1")).await, Ok(Claim::InProgress));
    assert_eq!(guard.claim("k", Some("body-2")).await, Ok(Claim::Reused), "another request under the same key");

    // A crashed holder: its lease runs out and the next attempt takes the key over.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let Ok(Claim::Acquired(second)) = guard.claim("k", Some("body-1")).await else {
        panic!("an expired lease is taken over")
    };
    guard.release(&first).await.expect("release");
    assert_eq!(
        guard.claim("k", Some("body-1")).await,
        Ok(Claim::InProgress),
        "the first attempt cannot give up the second's lease"
    );
    guard.complete("k", Some(&serde_json::json!({"order_id": "o-1"})), Some("body-1")).await.expect("complete");
    assert_eq!(
        guard.claim("k", Some("body-1")).await,
        Ok(Claim::Completed(Some(serde_json::json!({"order_id": "o-1"}))))
    );
    guard.release(&second).await.expect("release after completion is harmless");
    assert!(matches!(guard.claim("k", None).await, Ok(Claim::Completed(_))), "COMPLETED outlives a late release");

    // The blocking guard speaks the same protocol, on the same keys.
    let blocking_config = config.clone();
    let claimed = tokio::task::spawn_blocking(move || {
        let mut blocking = IdempotencyGuard::new(&redis_url(), blocking_config).expect("url");
        (blocking.claim("k", Some("body-1")), blocking.claim("other", None))
    })
    .await
    .expect("blocking guard");
    assert!(matches!(claimed.0, Ok(Claim::Completed(Some(_)))), "{:?}", claimed.0);
    assert!(matches!(claimed.1, Ok(Claim::Acquired(_))), "{:?}", claimed.1);
}

#[test]
fn an_unreachable_redis_fails_closed() {
    use operators::idempotency::{GuardConfig, GuardError, IdempotencyGuard};
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let config = GuardConfig { timeout: Duration::from_millis(500), ..GuardConfig::new("smoke-guard") };
    let mut guard = IdempotencyGuard::new(&format!("redis://:secret@127.0.0.1:{port}"), config).expect("a valid url");
    let error = guard.claim("k", None).expect_err("nothing listens there");
    assert!(matches!(error, GuardError::Unavailable(_)), "{error}");
    assert!(!error.to_string().contains("secret"), "the password never shows in an error: {error}");
}
