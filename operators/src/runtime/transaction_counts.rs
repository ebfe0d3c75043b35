//! Records read and written by the open transaction, per subtopology and topic: counted into the
//! metrics only once it commits, so an aborted and replayed record counts once.

use std::collections::HashMap;

/// Counts by subtopology, then topic.
type Counts = HashMap<usize, HashMap<String, u64>>;

#[derive(Default)]
pub(crate) struct TransactionCounts {
    inputs: Counts,
    outputs: Counts,
    records: usize,
}

impl TransactionCounts {
    pub fn read(&mut self, subtopology: usize, topic: &str) {
        self.records += 1;
        add(&mut self.inputs, subtopology, topic);
    }

    pub fn wrote(&mut self, subtopology: usize, topic: &str) {
        add(&mut self.outputs, subtopology, topic);
    }

    /// Input records in the open transaction.
    pub fn records(&self) -> usize {
        self.records
    }

    pub fn inputs(&self) -> impl Iterator<Item = (usize, &str, u64)> {
        flatten(&self.inputs)
    }

    pub fn outputs(&self) -> impl Iterator<Item = (usize, &str, u64)> {
        flatten(&self.outputs)
    }

    /// Keeps the maps' topics, whose counts start again at 0: the next transaction reads and
    /// writes the same few topics without allocating.
    pub fn clear(&mut self) {
        self.records = 0;
        for topics in self.inputs.values_mut().chain(self.outputs.values_mut()) {
            topics.values_mut().for_each(|count| *count = 0);
        }
    }
}

fn add(counts: &mut Counts, subtopology: usize, topic: &str) {
    let topics = counts.entry(subtopology).or_default();
    match topics.get_mut(topic) {
        Some(count) => *count += 1,
        None => {
            topics.insert(topic.to_string(), 1);
        }
    }
}

fn flatten(counts: &Counts) -> impl Iterator<Item = (usize, &str, u64)> {
    counts
        .iter()
        .flat_map(|(subtopology, topics)| {
            topics.iter().map(move |(topic, count)| (*subtopology, topic.as_str(), *count))
        })
        .filter(|(_, _, count)| *count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_start_again_at_0_after_a_clear() {
        let mut counts = TransactionCounts::default();
        counts.read(0, "orders");
        counts.read(0, "orders");
        counts.wrote(0, "orders-repartition");
        counts.read(1, "orders-repartition");
        assert_eq!(counts.records(), 3);
        let mut inputs: Vec<_> = counts.inputs().collect();
        inputs.sort();
        assert_eq!(inputs, [(0, "orders", 2), (1, "orders-repartition", 1)]);
        assert_eq!(counts.outputs().collect::<Vec<_>>(), [(0, "orders-repartition", 1)]);
        counts.clear();
        assert_eq!((counts.records(), counts.inputs().count(), counts.outputs().count()), (0, 0, 0));
    }
}
