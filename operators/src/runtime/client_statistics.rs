//! The few fields of librdkafka's statistics JSON that the runtime reports, read leniently:
//! rdkafka's full `Statistics` type refuses some producers' documents (a transactional one,
//! say) as a whole, and a report must not depend on fields it does not use.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ClientSnapshot {
    /// Messages in the producer's queues, not yet acknowledged.
    pub msg_cnt: u64,
    pub brokers: HashMap<String, BrokerSnapshot>,
    pub topics: HashMap<String, TopicSnapshot>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BrokerSnapshot {
    /// -1 for bootstrap and coordinator entries, which are not brokers of their own.
    pub nodeid: i32,
    pub rtt: Option<Window>,
}

/// A latency window, in microseconds.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Window {
    pub avg: i64,
    pub cnt: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TopicSnapshot {
    pub partitions: HashMap<String, PartitionSnapshot>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PartitionSnapshot {
    /// -1 for the topic's internal unassigned partition.
    pub partition: i32,
    /// Messages fetched and waiting to be consumed.
    pub fetchq_cnt: i64,
}

impl ClientSnapshot {
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// (broker id, mean round trip in seconds) of each broker with requests in the window.
    pub fn round_trips(&self) -> impl Iterator<Item = (i32, f64)> + '_ {
        self.brokers.values().filter(|broker| broker.nodeid >= 0).filter_map(|broker| {
            broker.rtt.as_ref().filter(|rtt| rtt.cnt > 0).map(|rtt| (broker.nodeid, rtt.avg as f64 / 1e6))
        })
    }

    pub fn fetched_messages(&self) -> i64 {
        self.topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|p| p.partition >= 0)
            .map(|p| p.fetchq_cnt)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_with_fields_of_its_own_is_read_for_the_ones_reported() {
        let json = br#"{"name": "rdkafka#producer-1", "type": "producer", "msg_cnt": 7,
            "eos": {"idemp_state": "Assigned", "txn_state": "InTransaction", "unknown_field": [1, 2]},
            "brokers": {"127.0.0.1:9092/1": {"nodeid": 1, "rtt": {"avg": 2500, "cnt": 3, "p99": 9000}},
                        "GroupCoordinator": {"nodeid": -1, "rtt": {"avg": 9000000, "cnt": 1}},
                        "127.0.0.1:9092/bootstrap": {"nodeid": -1}},
            "topics": {"orders": {"partitions": {"0": {"partition": 0, "fetchq_cnt": 40}, "-1": {"partition": -1, "fetchq_cnt": 99}}}}}"#;
        let snapshot = ClientSnapshot::parse(json).unwrap();
        assert_eq!(snapshot.msg_cnt, 7);
        assert_eq!(snapshot.round_trips().collect::<Vec<_>>(), [(1, 0.0025)]);
        assert_eq!(snapshot.fetched_messages(), 40);
    }
}
