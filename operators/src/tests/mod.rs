//! Operator tests, each driving a topology through the `TopologyTestDriver` or a `Task`.

mod aggregation;
mod joins;
mod processor_api;
mod repartition;
mod stateless;
mod task;
mod topology;
mod windows;

use crate::dsl::StreamsBuilder;
use crate::test_driver::TopologyTestDriver;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

pub(crate) const APP: &str = "app";

pub(crate) fn driver(builder: StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::new(builder.build(APP))
}

pub(crate) fn kv(key: &str, value: impl Into<i64>) -> (String, i64) {
    (key.to_owned(), value.into())
}

pub(crate) fn pair(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}
