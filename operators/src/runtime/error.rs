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
    #[error("restoring {changelog} failed: {reason}")]
    Restore { changelog: String, reason: String },
    #[error("the stream thread panicked")]
    ThreadPanicked,
}
