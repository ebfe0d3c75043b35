//! State stores.
//!
//! Every store is, at the bottom, an ordered byte key–value store ([`KeyValueBytesStore`]) with a
//! transaction lifecycle ([`StateStore`]) that the task drives: writes stay pending until the task
//! commits, a savepoint per record lets a failed record's writes be discarded, and `abort` drops
//! everything since the last commit. Window, session and timer stores are key layouts over that
//! byte store, so the persistent implementation ([`PersistentKeyValueStore`], on fjall, chosen per
//! store by configuration) serves every kind of store without touching operator code.
//!
//! Operators never write to a store directly: they go through a change-logging view that also
//! emits each write as a changelog record for the task's partition, which is what makes state
//! recoverable after a crash.

mod builder;
mod checkpoint;
#[cfg(test)]
mod contract;
mod in_memory;
mod logging;
mod pending;
mod persistent;
mod session;
mod time_key;
pub(crate) mod timers;
mod typed;
mod window;

use std::error::Error;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use crate::error::ProcessError;
use crate::topology::TaskId;

pub use builder::StoreBuilder;
pub use in_memory::{InMemoryKeyValueStore, InMemoryStoreSupplier};
pub(crate) use logging::ChangeLoggingStore;
pub use persistent::{PersistentKeyValueStore, PersistentMemory, PersistentStores};
pub use session::{SessionBytesStore, SessionEntry, SessionStoreIterator, TimeOrderedSessionStore};
pub use typed::KeyValueStore;
pub(crate) use typed::{SessionStore, StoreSerdes, WindowStore};
pub use window::{TimeOrderedWindowStore, WindowBytesStore, WindowEntry, WindowStoreIterator};

/// A failure inside a store implementation.
#[derive(Clone, Debug)]
pub struct StoreError {
    message: String,
    retriable: bool,
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        StoreError { message: message.into(), retriable: false, cause: None }
    }

    pub fn retriable(mut self) -> Self {
        self.retriable = true;
        self
    }

    pub fn with_cause(mut self, cause: impl Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn Error + 'static))
    }
}

impl From<StoreError> for ProcessError {
    fn from(error: StoreError) -> Self {
        let retriable = error.retriable;
        ProcessError::store(error.message.clone()).with_retriable(retriable).with_cause(error)
    }
}

/// One key–value pair of bytes.
pub type ByteEntry = (Vec<u8>, Vec<u8>);

/// The entries of a range scan, in key order, read as they are consumed: stopping early reads no
/// more (Kafka Streams' `KeyValueIterator`). After an error it ends.
pub type KeyValueIterator<'a> = Box<dyn Iterator<Item = Result<ByteEntry, StoreError>> + 'a>;

/// Ordered byte key–value access: what operators read and write.
pub trait KeyValueBytesStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes `value`, or deletes the key when `value` is `None`.
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError>;

    /// Entries with keys inside the bounds, in byte order of keys: committed state with the
    /// pending writes laid over it. Inverted bounds give nothing. The iterator borrows the store,
    /// so a caller that writes what it reads collects the keys first.
    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> KeyValueIterator<'_>;
}

/// A store owned by one task: byte access plus the transaction lifecycle the task drives.
pub trait StateStore: KeyValueBytesStore + Send {
    fn name(&self) -> &str;

    /// Marks the point [`StateStore::rollback_to_savepoint`] returns to. Called before each record.
    fn savepoint(&mut self);

    /// Discards writes made since the last savepoint, commit or abort.
    fn rollback_to_savepoint(&mut self);

    /// Makes pending writes the committed state. Called once the transaction holding their
    /// changelog records has committed, so a failure here (a full disk) leaves local state behind
    /// the changelog: the task must stop, and its local state is rebuilt from the changelog.
    fn commit(&mut self) -> Result<(), StoreError>;

    /// Drops pending writes: the store returns to its last committed state.
    fn abort(&mut self);

    /// Applies one changelog record straight to the committed state.
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError>;

    /// Forgets every entry, committed and pending: local state that cannot be trusted, before a
    /// restore from the beginning of the changelog.
    fn wipe(&mut self) -> Result<(), StoreError>;

    /// Committed entries (live keys, deletes not counted), for the store-size metric.
    fn entries(&self) -> Result<u64, StoreError>;

    /// Whether the store keeps local state across restarts (and so takes checkpoints).
    fn is_persistent(&self) -> bool {
        false
    }

    /// The changelog offset the local state is complete up to, read from a clean checkpoint at
    /// open: a restore starts there. `None`: from the beginning.
    fn restore_from(&self) -> Option<i64> {
        None
    }

    /// Makes local state durable and records that it is complete up to `changelog_end`. Called
    /// when the task is closed after a clean commit; as Kafka Streams under exactly-once, state
    /// has no checkpoint while the task runs, so a crash means a full restore.
    fn checkpoint(&mut self, _changelog_end: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes the checkpoint again: a suspended task resumes and writes on.
    fn discard_checkpoint(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Bytes the store takes on disk (0 in memory).
    fn disk_bytes(&self) -> u64 {
        0
    }
}

/// Makes one store instance per task: in memory ([`InMemoryStoreSupplier`]) or on disk
/// ([`PersistentStores`]).
pub trait StoreSupplier: Send + Sync {
    fn build(&self, name: &str, task: TaskId) -> Result<Box<dyn StateStore>, StoreError>;
}

/// The keys of a scan, collected: for a caller that writes the keys it reads, which it cannot do
/// while the scan borrows the store.
pub(crate) fn keys(scan: KeyValueIterator<'_>) -> Result<Vec<Vec<u8>>, StoreError> {
    scan.map(|entry| entry.map(|(key, _)| key)).collect()
}

/// Whether a byte range is empty because its bounds are inverted or touch at an excluded end.
/// Checked before ranging a `BTreeMap`, which panics on such bounds.
pub(crate) fn is_empty_range(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}
