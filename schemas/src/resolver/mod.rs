//! Where [`SagaCodec`](crate::SagaCodec) gets schema ids and writer schemas: one trait, answered
//! by the registry with a cache ([`RegistryResolver`]) or by fixed ids for tests and offline tools
//! ([`FixedIdsResolver`]).

mod fixed_ids;
mod registry_ids;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use apache_avro::Schema;

use crate::codec::CodecError;
use crate::event_type::EventType;

pub use fixed_ids::FixedIdsResolver;
pub use registry_ids::RegistryResolver;

/// A lookup that has to wait for someone (the registry).
pub type Asking<'a, T> = Pin<Box<dyn Future<Output = Result<T, CodecError>> + Send + 'a>>;

/// A resolver's answer: known at once (cached, or fixed), or a lookup to wait for. Telling them
/// apart lets a synchronous caller (the stream thread) answer from the cache without any runtime.
pub enum Answer<'a, T> {
    Known(Result<T, CodecError>),
    Asking(Asking<'a, T>),
}

/// Schema ids for encoding and writer schemas for decoding, under TopicRecordNameStrategy
/// subjects ([`subject_for`](crate::subject_for)). A lookup never registers anything:
/// `pipeline schemas register` does.
pub trait SchemaResolver: Send + Sync + fmt::Debug {
    /// The id of `event_type`'s current schema on `topic`.
    fn schema_id<'a>(&'a self, topic: &'a str, event_type: EventType) -> Answer<'a, u32>;

    /// The schema the wire-format id `id` stands for.
    fn writer_schema(&self, id: u32) -> Answer<'_, Arc<Schema>>;
}

impl<T: Send> Answer<'_, T> {
    pub async fn resolve(self) -> Result<T, CodecError> {
        match self {
            Answer::Known(known) => known,
            Answer::Asking(lookup) => lookup.await,
        }
    }

    /// [`Answer::resolve`] for a caller that is not an async task. A lookup runs on a thread of
    /// its own with a runtime of its own: the caller may be inside another runtime (where
    /// blocking on one panics) or in none. Only a cache miss pays for it, once per id.
    pub fn wait(self) -> Result<T, CodecError> {
        let lookup = match self {
            Answer::Known(known) => return known,
            Answer::Asking(lookup) => lookup,
        };
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                        CodecError::CannotWait { detail: format!("no runtime to ask the registry: {e}") }
                    })?;
                    runtime.block_on(lookup)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(CodecError::CannotWait { detail: "the registry lookup thread panicked".to_string() })
                })
        })
    }
}
