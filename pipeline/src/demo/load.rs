//! Drives a demo load through the order API: mostly good orders, plus every failure path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// What an order in the demo is meant to exercise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    Happy,
    LowCredit,
    LowStock,
    BadAddress,
    CustomerCancel,
}

impl Scenario {
    /// One order in twelve fails on purpose, each failure kind in turn.
    pub fn for_index(i: usize) -> Scenario {
        match i % 48 {
            5 => Scenario::LowCredit,
            17 => Scenario::LowStock,
            29 => Scenario::BadAddress,
            41 => Scenario::CustomerCancel,
            _ => Scenario::Happy,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PlacedOrder {
    pub order_id: String,
    pub customer_id: String,
    pub scenario: Scenario,
    pub total_cents: i64,
    /// (product_id, quantity)
    pub items: Vec<(String, i64)>,
    /// Wall-clock ms when the POST was sent.
    pub placed_at_ms: i64,
    /// How long the order API took to accept it (202), retries included.
    pub accepted_after: Duration,
    /// How long after its due time (see [`LoadSpec::rate`]) the POST went out: the time it
    /// queued in the load generator itself.
    pub sent_late: Duration,
    /// The HTTP status that answered the customer's cancellation, if one was sent.
    pub cancel_answer: Option<u16>,
}

pub struct LoadSpec {
    pub api: String,
    pub run_id: String,
    pub orders: usize,
    pub concurrency: usize,
    /// Orders per second to offer; None places them as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// More than any customer's starting credit (payment fails).
    pub unaffordable_cents: i64,
    /// More than any product's starting stock (reservation fails); the API allows up to 10,000.
    pub unobtainable_quantity: i64,
    /// Cancellations race the saga: sent after a random delay in this range (ms), and also for
    /// one in six of the good orders. `None`: CustomerCancel orders are cancelled at once.
    pub cancel_delay_ms: Option<(u64, u64)>,
}

/// Whether order `i` gets a cancellation, and after how long.
fn cancellation(spec: &LoadSpec, i: usize, scenario: Scenario) -> Option<Duration> {
    match spec.cancel_delay_ms {
        None => (scenario == Scenario::CustomerCancel).then_some(Duration::ZERO),
        Some((min, max)) if scenario == Scenario::CustomerCancel || (scenario == Scenario::Happy && i % 6 == 3) => {
            // uuid's random bits: good enough to spread delays, and no extra dependency.
            let spread = max.saturating_sub(min).max(1);
            Some(Duration::from_millis(min + (uuid::Uuid::new_v4().as_u128() % u128::from(spread)) as u64))
        }
        Some(_) => None,
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn order_body(spec: &LoadSpec, i: usize, scenario: Scenario) -> (Value, String, i64, Vec<(String, i64)>) {
    let customer = format!("{}-customer-{}", spec.run_id, i % 97);
    let mut items =
        vec![(format!("{}-product-{}", spec.run_id, i % 31), 1 + (i % 3) as i64, 1_250 + (i % 7) as i64 * 100)];
    if i.is_multiple_of(4) {
        items.push((format!("{}-product-{}", spec.run_id, (i + 11) % 31), 1, 990));
    }
    match scenario {
        Scenario::LowCredit => items[0].2 = spec.unaffordable_cents,
        // Cheap, so that payment succeeds and inventory is what refuses it.
        Scenario::LowStock => (items[0].1, items[0].2) = (spec.unobtainable_quantity, 1),
        _ => {}
    }
    let line1 = if scenario == Scenario::BadAddress { "INVALID street 0" } else { "1 Example Street" };
    let total = items.iter().map(|(_, q, p)| q * p).sum();
    let body = json!({
        "customer_id": customer,
        "items": items.iter().map(|(p, q, u)| json!({"product_id": p, "quantity": q, "unit_price": u})).collect::<Vec<_>>(),
        "shipping_address": {"line1": line1, "city": "Berlin", "postal_code": "10115", "country": "DE"},
    });
    (body, customer, total, items.into_iter().map(|(p, q, _)| (p, q)).collect())
}

/// Places every order (and cancels some, see [`LoadSpec::cancel_delay_ms`]), `concurrency` at a time.
pub async fn drive(
    spec: LoadSpec,
    progress: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Result<Vec<PlacedOrder>> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let spec = Arc::new(spec);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(progress);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let (client, spec, next, done, progress) =
            (client.clone(), spec.clone(), next.clone(), done.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut placed: Vec<PlacedOrder> = Vec::new();
            let mut cancels: Vec<(usize, tokio::task::JoinHandle<Result<u16>>)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= spec.orders {
                    for (index, cancel) in cancels {
                        let answer = cancel.await.context("cancel task")??;
                        if let Some(order) = placed.get_mut(index) {
                            order.cancel_answer = Some(answer);
                        }
                    }
                    return Ok::<_, anyhow::Error>(placed);
                }
                let mut sent_late = Duration::ZERO;
                if let Some(rate) = spec.rate {
                    // Open-loop pacing: order i is due at i / rate seconds from the start.
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                    sent_late = due.elapsed();
                }
                let scenario = Scenario::for_index(i);
                let (body, customer_id, total_cents, items) = order_body(&spec, i, scenario);
                let placed_at_ms = now_ms();
                let posted = Instant::now();
                let order_id = post_order(&client, &spec, &body, i).await?;
                let accepted_after = posted.elapsed();
                let mut cancel_answer = None;
                match cancellation(&spec, i, scenario) {
                    Some(Duration::ZERO) => cancel_answer = Some(cancel_order(&client, &spec.api, &order_id).await?),
                    Some(delay) => {
                        let (client, api, order_id) = (client.clone(), spec.api.clone(), order_id.clone());
                        cancels.push((
                            placed.len(),
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                cancel_order(&client, &api, &order_id).await
                            }),
                        ));
                    }
                    None => {}
                }
                placed.push(PlacedOrder {
                    order_id,
                    customer_id,
                    scenario,
                    total_cents,
                    items,
                    placed_at_ms,
                    accepted_after,
                    sent_late,
                    cancel_answer,
                });
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, spec.orders);
            }
        }));
    }
    let mut all = Vec::with_capacity(spec.orders);
    for worker in workers {
        all.extend(worker.await.context("load worker")??);
    }
    Ok(all)
}

/// Retries with the same Idempotency-Key, as a client should: while the first attempt is in
/// flight (409), and on a 5xx or a lost connection, with backoff, for up to 30 s.
async fn post_order(client: &reqwest::Client, spec: &LoadSpec, body: &Value, i: usize) -> Result<String> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let sent = client
            .post(format!("{}/orders", spec.api))
            .header("Idempotency-Key", format!("{}-{i}", spec.run_id))
            .json(body)
            .send()
            .await;
        let failure = match sent {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                if status.is_success() {
                    let value: Value =
                        serde_json::from_str(&text).with_context(|| format!("order API answered {text}"))?;
                    return value["order_id"]
                        .as_str()
                        .map(str::to_string)
                        .with_context(|| format!("no order_id in {text}"));
                }
                if status.as_u16() != 409 && !status.is_server_error() {
                    bail!("POST /orders failed ({status}): {text}");
                }
                format!("{status}: {text}")
            }
            Err(e) => format!("order API at {} is unreachable: {e}", spec.api),
        };
        if started.elapsed() > Duration::from_secs(30) {
            bail!("POST /orders kept failing for 30 s: {failure}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The status that answered: 202, or 409 when the order is past cancelling (a reason comes with it).
/// A 5xx (the database restarting, say) committed nothing, so it is retried with backoff for up
/// to 30 s; a lost connection is not, since the cancellation may have been recorded.
async fn cancel_order(client: &reqwest::Client, api: &str, order_id: &str) -> Result<u16> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let response = client.post(format!("{api}/orders/{order_id}/cancel")).send().await?;
        let status = response.status();
        if status.is_success() || status.as_u16() == 409 {
            return Ok(status.as_u16());
        }
        let text = response.text().await.unwrap_or_default();
        if !status.is_server_error() || started.elapsed() > Duration::from_secs(30) {
            bail!("POST /orders/{order_id}/cancel failed ({status}): {text}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
