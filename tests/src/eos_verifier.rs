//! The verifier of the scale-out exactly-once tests, after Kafka's `EosTestDriver.verify`: it
//! reads the three `read_committed` outputs of `eos_join_app` and checks, per key, that every
//! input was echoed, summed and fired exactly once. Inputs of a key arrive over three topics, so
//! their processing order is not fixed: values are compared as multisets.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::eos::values_by_key;
use crate::kafka::read_topic;

pub type ByKey = BTreeMap<String, Vec<i64>>;

/// After the expected count is reached: long enough for duplicates behind it to show up.
const GRACE: Duration = Duration::from_secs(3);
/// Without new output for this long the app has settled short of the expected count. Covers a
/// killed instance's session timeout plus its open transaction timing out, which holds back
/// `read_committed` readers.
const IDLE: Duration = Duration::from_secs(20);
/// How many values of a difference to print before eliding the rest.
const SHOWN: usize = 10;

pub struct Delivered {
    pub echo: ByKey,
    pub sums: ByKey,
    pub fired: ByKey,
}

/// Reads the echo, sum and fired topics in parallel, each until it holds `expected` records
/// (then for a grace period), has been idle for a while, or `timeout` passed.
pub fn read_outputs(bootstrap: &str, [echo, sums, fired]: [&str; 3], expected: usize, timeout: Duration) -> Delivered {
    std::thread::scope(|scope| {
        let [echo, sums, fired] =
            [echo, sums, fired].map(|topic| scope.spawn(move || read_settled(bootstrap, topic, expected, timeout)));
        let join = |handle: std::thread::ScopedJoinHandle<'_, ByKey>| handle.join().expect("output reader panicked");
        Delivered { echo: join(echo), sums: join(sums), fired: join(fired) }
    })
}

fn read_settled(bootstrap: &str, topic: &str, expected: usize, timeout: Duration) -> ByKey {
    let reached: Cell<Option<Instant>> = Cell::new(None);
    let last_growth = Cell::new((0, Instant::now()));
    let records = read_topic(bootstrap, topic, "read_committed", timeout, |records| {
        let now = Instant::now();
        if records.len() != last_growth.get().0 {
            last_growth.set((records.len(), now));
        }
        if records.len() >= expected {
            let since = reached.get().unwrap_or(now);
            reached.set(Some(since));
            return now - since >= GRACE;
        }
        now - last_growth.get().1 >= IDLE
    });
    values_by_key(&records)
}

/// Ok (printing `ALL-RECORDS-DELIVERED`) if every output holds exactly the input, or every
/// difference found, one line per key and output.
pub fn verify(sent: &ByKey, delivered: &Delivered) -> Result<(), String> {
    let total: usize = sent.values().map(Vec::len).sum();
    let count = |output: &ByKey| output.values().map(Vec::len).sum::<usize>();
    let mut problems = vec![format!(
        "inputs: {total}; read_committed echo: {}, sums: {}, fired: {}",
        count(&delivered.echo),
        count(&delivered.sums),
        count(&delivered.fired)
    )];
    let keys: BTreeSet<&String> =
        sent.keys().chain(delivered.echo.keys()).chain(delivered.sums.keys()).chain(delivered.fired.keys()).collect();
    for key in keys {
        let inputs = sent.get(key).map(Vec::as_slice).unwrap_or_default();
        let got = |output: &ByKey| output.get(key).map(Vec::as_slice).unwrap_or_default().to_vec();
        problems.extend(multiset_difference("echo", key, inputs, &got(&delivered.echo)));
        problems.extend(sum_difference(key, inputs, &got(&delivered.sums)));
        problems.extend(multiset_difference("fired", key, inputs, &got(&delivered.fired)));
    }
    if problems.len() == 1 {
        println!("ALL-RECORDS-DELIVERED ({})", problems[0]);
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn counts(values: &[i64]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for &value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

/// Values in `a` more often than in `b`, with multiplicity.
fn excess(a: &BTreeMap<i64, usize>, b: &BTreeMap<i64, usize>) -> Vec<i64> {
    a.iter()
        .flat_map(|(&value, &n)| std::iter::repeat_n(value, n.saturating_sub(b.get(&value).copied().unwrap_or(0))))
        .collect()
}

fn multiset_difference(output: &str, key: &str, inputs: &[i64], got: &[i64]) -> Option<String> {
    let (want, have) = (counts(inputs), counts(got));
    let (missing, duplicated) = (excess(&want, &have), excess(&have, &want));
    if missing.is_empty() && duplicated.is_empty() {
        return None;
    }
    Some(format!(
        "{output} {key}: {} of {} inputs; missing {}; duplicated or unexpected {}",
        got.len(),
        inputs.len(),
        shown(&missing),
        shown(&duplicated)
    ))
}

/// Each sum must add one not-yet-added input to the previous sum (the first to 0): a repeated
/// or lost state update, or a store restored to an old value, breaks the chain.
fn sum_difference(key: &str, inputs: &[i64], sums: &[i64]) -> Option<String> {
    let mut pending = counts(inputs);
    let mut previous = 0;
    let mut first_bad = None;
    for (i, &sum) in sums.iter().enumerate() {
        let added = sum - previous;
        match pending.get_mut(&added) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                first_bad =
                    Some(format!("first bad sum #{i}: {sum} after {previous} adds {added}, not a pending input"));
                break;
            }
        }
        previous = sum;
    }
    let total: i64 = inputs.iter().sum();
    let last = sums.last().copied().unwrap_or(0);
    if first_bad.is_none() && last == total && sums.len() == inputs.len() {
        return None;
    }
    let never_added = if first_bad.is_none() {
        format!("; never added {}", shown(&excess(&pending, &BTreeMap::new())))
    } else {
        String::new()
    };
    Some(format!(
        "sum {key}: {} sums for {} inputs; last sum {last}, total {total}{}{never_added}",
        sums.len(),
        inputs.len(),
        first_bad.map(|bad| format!("; {bad}")).unwrap_or_default()
    ))
}

fn shown(values: &[i64]) -> String {
    if values.len() <= SHOWN {
        return format!("{} {values:?}", values.len());
    }
    format!("{} {:?} and {} more", values.len(), &values[..SHOWN], values.len() - SHOWN)
}
