//! The Kafka Streams DSL: [`StreamsBuilder`], [`KStream`], [`KTable`], grouping and windowing.

mod aggregators;
mod branched;
mod builder;
mod grouped;
mod kstream;
mod ktable;
mod options;
mod windowed;

use std::sync::Arc;

use crate::error::ProcessError;
use crate::graph::{NodeFactory, TopicName};
use crate::node::sink::SinkNode;
use crate::node::stateless::{StatelessFn, StatelessNode};
use crate::node::NodeContext;
use crate::record::{Data, Record};
use crate::serdes::Serde;

pub use branched::BranchedKStream;
pub use builder::StreamsBuilder;
pub use grouped::KGroupedStream;
pub use kstream::KStream;
pub use ktable::KTable;
pub use options::{Consumed, Grouped, Materialized, Processed, Produced, Repartitioned};
pub use windowed::{SessionWindowedKStream, TimeWindowedKStream, WindowedBy};

/// Gives a closure the higher-ranked signature a stateless node needs.
fn stateless<K, V>(
    op: impl Fn(Record<K, V>, &mut NodeContext<'_>) -> Result<(), ProcessError> + Send + Sync + 'static,
) -> StatelessFn<K, V> {
    Arc::new(op)
}

fn stateless_factory<K: Data, V: Data>(op: StatelessFn<K, V>) -> NodeFactory {
    Arc::new(move |_| Box::new(StatelessNode { op: Arc::clone(&op) }))
}

fn sink_factory<K: Data, V: Data>(
    topic: TopicName,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
) -> NodeFactory {
    Arc::new(move |setup| {
        Box::new(SinkNode {
            topic: topic.resolve(setup.application_id),
            key_serde: Arc::clone(&key_serde),
            value_serde: Arc::clone(&value_serde),
        })
    })
}
