//! The saga's invariants, checked over one demo run's orders against committed state: the
//! read model, the participants' changelog-backed stores, the saga topics and the shipments table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::Pool;

use super::changelog::{history_by_key, latest_by_key, read_all};
use super::load::PlacedOrder;
use super::outcome::{is_terminal, FinalState};

/// One invariant and whether it held, with the first counter-examples when it did not.
pub struct Check {
    pub name: &'static str,
    pub violations: Vec<String>,
}

impl Check {
    pub fn holds(&self) -> bool {
        self.violations.is_empty()
    }
}

pub struct Sources<'a> {
    pub bootstrap: &'a str,
    pub pool: &'a Pool,
    pub default_balance_cents: i64,
    pub default_stock: i64,
}

const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The checks, and how many of the run's events of each type the topics hold (which shows what
/// the run exercised: late steps, compensations, refused cancellations).
pub async fn check_all(
    sources: &Sources<'_>,
    orders: &[PlacedOrder],
    states: &HashMap<String, FinalState>,
) -> Result<(Vec<Check>, BTreeMap<String, usize>)> {
    let ids: HashSet<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
    let (saga, retired) = settled_saga_state(sources.bootstrap, &ids).await?;
    let balances = store_json(sources.bootstrap, "payment-balances-changelog")?;
    let stock = store_json(sources.bootstrap, "inventory-stock-changelog")?;
    let saga_status = |id: &str| saga.get(id).and_then(|s| s["status"].as_str().map(str::to_string));

    let mut checks = Vec::new();

    // 1. Exactly one terminal state per order, in the saga and the read model; a parked order
    //    says why.
    let mut violations = Vec::new();
    for order in orders {
        let status = saga_status(&order.order_id).unwrap_or_else(|| "missing".into());
        let parked_with_reason = saga.get(&order.order_id).is_some_and(|s| s["parked"].is_string());
        let terminal = matches!(status.as_str(), "CONFIRMED" | "CANCELLED")
            || (status == "REQUIRES_INTERVENTION" && parked_with_reason);
        if !terminal {
            violations.push(format!("{} ({:?}) ended as {status} in the saga", order.order_id, order.scenario));
        }
    }
    checks.push(Check { name: "every order reached exactly one terminal state", violations });

    // 2. Money: initial credit = balance + total of CONFIRMED orders, per customer.
    let confirmed = |order: &PlacedOrder| saga_status(&order.order_id).as_deref() == Some("CONFIRMED");
    let mut spent: BTreeMap<&str, i64> = BTreeMap::new();
    for order in orders {
        *spent.entry(&order.customer_id).or_default() += if confirmed(order) { order.total_cents } else { 0 };
    }
    let mut violations = Vec::new();
    for (customer, spent) in &spent {
        let balance = balances.get(*customer).and_then(|b| b["balance_cents"].as_i64());
        match balance {
            Some(balance) if balance + spent == sources.default_balance_cents => {}
            other => violations.push(format!(
                "{customer}: initial {} != balance {other:?} + confirmed {spent}",
                sources.default_balance_cents
            )),
        }
    }
    checks.push(Check { name: "money is conserved (initial = balance + confirmed totals)", violations });

    // 3. Stock: initial = stock + units of CONFIRMED orders, and never negative.
    let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
    for order in orders {
        for (product, quantity) in &order.items {
            *sold.entry(product).or_default() += if confirmed(order) { *quantity } else { 0 };
        }
    }
    let mut violations = Vec::new();
    for (product, sold) in &sold {
        let available = stock.get(*product).and_then(|s| s["available"].as_i64());
        match available {
            Some(available) if available >= 0 && available + sold == sources.default_stock => {}
            other => violations
                .push(format!("{product}: initial {} != stock {other:?} + confirmed {sold}", sources.default_stock)),
        }
    }
    checks.push(Check { name: "stock is conserved and never negative", violations });

    // 4. No duplicates: no two events of one type for one order on the committed topics,
    //    and at most one shipment per order.
    let mut violations = Vec::new();
    let mut events: HashMap<(String, String), usize> = HashMap::new();
    for topic in crate::setup::SAGA_TOPICS {
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for record in read_all(sources.bootstrap, topic, READ_TIMEOUT)? {
            let order_id = String::from_utf8_lossy(&record.key.unwrap_or_default()).to_string();
            if !ids.contains(order_id.as_str()) {
                continue;
            }
            let event_type = record
                .headers
                .get("event_type")
                .map(|v| String::from_utf8_lossy(v).to_string())
                .or_else(|| event_type_of(record.value.as_deref()))
                .unwrap_or_else(|| "unknown".into());
            *seen.entry((order_id, event_type)).or_default() += 1;
        }
        // A request to retry compensations is repeatable by design (the saga's own, when one is overdue).
        let repeated = seen.iter().filter(|((_, event_type), n)| **n > 1 && event_type != "OrderInterventionRequested");
        violations.extend(repeated.map(|((o, t), n)| format!("{topic}: {t} x{n} for {o}")));
        events.extend(seen);
    }
    let client = sources.pool.get().await?;
    let id_list: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let shipments = client
        .query(
            "select order_id, count(*) from shipments where order_id = any($1) group by order_id having count(*) > 1",
            &[&id_list],
        )
        .await
        .context("counting shipments")?;
    violations.extend(
        shipments.iter().map(|row| format!("{} shipments for {}", row.get::<_, i64>(1), row.get::<_, String>(0))),
    );
    checks.push(Check {
        name: "no duplicate events on read_committed topics, at most one shipment per order",
        violations,
    });

    // 5. The read model agrees with the saga.
    let mut violations = Vec::new();
    for order in orders {
        let saga = saga_status(&order.order_id);
        let view = states.get(&order.order_id).map(|s| s.status.clone());
        if saga.is_none() || saga != view || !view.as_deref().is_some_and(is_terminal) {
            violations.push(format!("{}: saga {saga:?}, read model {view:?}", order.order_id));
        }
    }
    checks.push(Check { name: "the read model agrees with the saga's final states", violations });

    // 6. Every step a cancelled order completed was compensated, exactly once.
    let count = |order_id: &str, event_type: &str| {
        events.get(&(order_id.to_string(), event_type.to_string())).copied().unwrap_or(0)
    };
    let mut violations = Vec::new();
    for order in orders.iter().filter(|o| saga_status(&o.order_id).as_deref() == Some("CANCELLED")) {
        for (step, undo) in [
            ("PaymentCompleted", "PaymentRefunded"),
            ("InventoryReserved", "InventoryReleased"),
            ("ShipmentCreated", "ShipmentCancelled"),
        ] {
            let (done, undone) = (count(&order.order_id, step), count(&order.order_id, undo));
            if done != undone || done > 1 {
                violations.push(format!("{}: {step} x{done}, {undo} x{undone}", order.order_id));
            }
        }
    }
    checks.push(Check { name: "every completed step of a cancelled order was compensated exactly once", violations });

    // 7. No cancellation vanished: a 202 ends cancelled, or confirmed with the refusal published.
    let mut violations = Vec::new();
    for order in orders {
        let status = saga_status(&order.order_id).unwrap_or_default();
        match order.cancel_answer {
            None | Some(409) => {}
            Some(202) if status != "CONFIRMED" || count(&order.order_id, "OrderCancellationRejected") == 1 => {}
            Some(answer) => violations
                .push(format!("{}: cancel answered {answer}, order ended {status} with no refusal", order.order_id)),
        }
    }
    checks.push(Check { name: "every accepted cancellation was carried out or refused in the open", violations });

    // 8. Retention deleted only decided orders: the last state before each tombstone is terminal.
    let mut violations = Vec::new();
    for id in &retired {
        let status = saga_status(id).unwrap_or_default();
        if !matches!(status.as_str(), "CONFIRMED" | "CANCELLED") {
            violations.push(format!("{id}: the saga's state was deleted while {status}"));
        }
    }
    checks.push(Check { name: "retention deleted only the state of decided orders", violations });

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    if !retired.is_empty() {
        tally.insert("(saga states retired)".into(), retired.len());
    }
    for ((_, event_type), n) in &events {
        *tally.entry(event_type.clone()).or_default() += n;
    }
    Ok((checks, tally))
}

/// The saga's committed state per order, once it has caught up with the read model: the demo
/// waits for terminal states in the read model, and the saga may still be a commit behind the
/// projector (a rebalance after a kill), so its changelog is read again until every order is
/// terminal there too, or a minute has passed (then the checks report what is left). An order
/// whose state retention deleted counts with its last state; its id is in the second set.
async fn settled_saga_state(
    bootstrap: &str,
    ids: &HashSet<&str>,
) -> Result<(HashMap<String, serde_json::Value>, HashSet<String>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let history = history_by_key(read_all(bootstrap, "order-saga-orders-changelog", READ_TIMEOUT)?);
        let mut saga = HashMap::new();
        let mut retired = HashSet::new();
        for (key, entry) in history {
            let (Ok(id), Ok(state)) =
                (String::from_utf8(key), serde_json::from_slice::<serde_json::Value>(&entry.last_value))
            else {
                continue;
            };
            if !ids.contains(id.as_str()) {
                continue;
            }
            if entry.deleted {
                retired.insert(id.clone());
            }
            saga.insert(id, state);
        }
        let terminal = |id: &&str| {
            saga.get(*id)
                .and_then(|s| s["status"].as_str())
                .is_some_and(|status| matches!(status, "CONFIRMED" | "CANCELLED" | "REQUIRES_INTERVENTION"))
        };
        if ids.iter().all(terminal) || std::time::Instant::now() >= deadline {
            return Ok((saga, retired));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A store's committed contents: string keys, JSON values.
fn store_json(bootstrap: &str, changelog: &str) -> Result<HashMap<String, serde_json::Value>> {
    let latest = latest_by_key(read_all(bootstrap, changelog, READ_TIMEOUT)?);
    Ok(latest
        .into_iter()
        .filter_map(|(k, v)| Some((String::from_utf8(k).ok()?, serde_json::from_slice(&v).ok()?)))
        .collect())
}

/// Event type from the wire bytes, when a record carries no header (events the participants wrote).
fn event_type_of(value: Option<&[u8]>) -> Option<String> {
    let (id, _) = schemas::parse_wire(value?).ok()?;
    Some(format!("schema-{id}"))
}
