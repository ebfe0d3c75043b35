//! Errors that stop the runtime.

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("source topic {0} does not exist; create it first (automatic topic creation is off)")]
    MissingSourceTopic(String),
    #[error("creating internal topic {topic} failed: {reason}")]
    TopicCreation { topic: String, reason: String },
    /// Another instance with the same transactional.id took over, or the producer hit a fatal
    /// error: nothing of the open transaction was committed.
    #[error("producer fenced or fatal error during {during}: {source}")]
    Fatal { during: &'static str, source: KafkaError },
    #[error("kafka client error during {during}: {source}")]
    Kafka { during: &'static str, source: KafkaError },
    /// A persistent store's local state could not be opened or written (a full disk): the task
    /// stops before committing more, and its local state is rebuilt from the changelog on start.
    #[error("local state: {0}")]
    LocalState(String),
    #[error("restoring {changelog} failed: {reason}")]
    Restore { changelog: String, reason: String },
    /// The group assigned a partition whose task is not running here, or only some of a task's
    /// co-partitioned source partitions: processing would skip records or split the task.
    #[error("partition {topic}-{partition} was handed to this instance without its task; is another instance using an assignor other than `range`?")]
    UnassignedTask { topic: String, partition: i32 },
    #[error("task {task} was assigned without its partitions of {missing:?}: co-partitioned topics must go to one member together (all instances must use the `range` assignor)")]
    IncompleteTask { task: String, missing: Vec<String> },
    /// A record the runtime cannot set aside for replay (a dead-letter copy, a punctuation
    /// output) was rejected by the broker.
    #[error("the broker rejected a record for {topic} from {origin}: {reason}")]
    Undeliverable { origin: String, topic: String, reason: String },
    #[error("the stream thread panicked")]
    ThreadPanicked,
}
