//! Where a confirmed order's time goes between its POST and the read model: the milestones it
//! passes, and per hop between two of them, p50 and p99 over the orders.

/// The hops, each ending at the milestone of the same index + 1 (milestone 0 is the POST).
pub const HOPS: [&str; 7] = [
    "order API: POST → OrderPlaced occurred_at",
    "Debezium: → OrderPlaced visible",
    "payment: → PaymentCompleted visible",
    "inventory: → InventoryReserved visible",
    "shipping: → ShipmentCreated visible",
    "order saga: → OrderConfirmed visible",
    "read model: → CONFIRMED in order_view",
];

/// One order's wall-clock instants (µs since the epoch) at the POST and at the end of each hop,
/// `None` where it was not seen.
pub type Milestones = [Option<i64>; HOPS.len() + 1];

pub struct Hop {
    pub name: &'static str,
    /// How many orders the percentiles are computed from.
    pub orders: usize,
    /// (p50, p99) in ms; `None` without any order.
    pub percentiles_ms: Option<(f64, f64)>,
}

/// Per hop, the percentiles over the orders that passed both its ends. An order missing a
/// milestone is left out of every hop from there on: what follows a gap is not measured.
pub fn breakdown<'a>(orders: impl IntoIterator<Item = &'a Milestones>) -> Vec<Hop> {
    let mut durations_us: Vec<Vec<i64>> = vec![Vec::new(); HOPS.len()];
    for milestones in orders {
        for (hop, ends) in milestones.windows(2).enumerate() {
            let (Some(start), Some(end)) = (ends[0], ends[1]) else { break };
            durations_us[hop].push(end - start);
        }
    }
    HOPS.iter()
        .zip(durations_us)
        .map(|(name, mut durations)| {
            durations.sort_unstable();
            let at = |p: f64| durations[((durations.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
            let percentiles_ms = (!durations.is_empty()).then(|| (at(0.50), at(0.99)));
            Hop { name, orders: durations.len(), percentiles_ms }
        })
        .collect()
}

/// The breakdown as an indented table, to follow a rate's summary line.
pub fn print(hops: &[Hop]) {
    println!("    {:<44} {:>7} {:>9} {:>9}", "hop (confirmed orders of this rate)", "orders", "p50 ms", "p99 ms");
    for hop in hops {
        let (p50, p99) = match hop.percentiles_ms {
            Some((p50, p99)) => (format!("{p50:.1}"), format!("{p99:.1}")),
            None => ("-".into(), "-".into()),
        };
        println!("    {:<44} {:>7} {p50:>9} {p99:>9}", hop.name, hop.orders);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An order that passes every milestone, `steps_ms[i]` after the one before.
    fn order(post_us: i64, steps_ms: [i64; HOPS.len()]) -> Milestones {
        let mut milestones = [Some(post_us); HOPS.len() + 1];
        for (hop, step) in steps_ms.iter().enumerate() {
            milestones[hop + 1] = milestones[hop].map(|at| at + step * 1000);
        }
        milestones
    }

    #[test]
    fn each_hop_is_the_time_between_its_milestones_over_the_orders() {
        let orders: Vec<Milestones> = (1..=100).map(|i| order(i * 7, [i, 2 * i, 3, 4, 5, 6, 100 - i])).collect();
        let hops = breakdown(&orders);
        let figures: Vec<(usize, Option<(f64, f64)>)> = hops.iter().map(|h| (h.orders, h.percentiles_ms)).collect();
        assert_eq!(
            figures,
            vec![
                (100, Some((51.0, 99.0))),
                (100, Some((102.0, 198.0))),
                (100, Some((3.0, 3.0))),
                (100, Some((4.0, 4.0))),
                (100, Some((5.0, 5.0))),
                (100, Some((6.0, 6.0))),
                (100, Some((50.0, 98.0))),
            ]
        );
    }

    #[test]
    fn a_missing_milestone_leaves_the_order_out_of_the_hops_from_there_on() {
        let whole = order(0, [1, 1, 1, 1, 1, 1, 1]);
        let mut no_payment = order(0, [2, 2, 2, 2, 2, 2, 2]);
        no_payment[3] = None;
        let hops = breakdown([&whole, &no_payment]);
        let counts: Vec<usize> = hops.iter().map(|h| h.orders).collect();
        assert_eq!(counts, vec![2, 2, 1, 1, 1, 1, 1]);
        assert_eq!(hops[2].percentiles_ms, Some((1.0, 1.0)), "payment: only the whole order");
        // Inventory's start is missing, so the order counts in no later hop either, though
        // shipping's two ends are there.
        assert_eq!(hops[4].percentiles_ms, Some((1.0, 1.0)));
    }

    #[test]
    fn a_hop_without_orders_has_no_percentiles() {
        let mut never_confirmed = order(0, [1, 1, 1, 1, 1, 1, 1]);
        never_confirmed[6] = None;
        let hops = breakdown([&never_confirmed]);
        assert_eq!(hops[5].orders, 0);
        assert_eq!(hops[5].percentiles_ms, None);
        assert_eq!(hops[6].percentiles_ms, None);
    }
}
