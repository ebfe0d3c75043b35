//! The persistent store: committed state in a fjall LSM tree on local disk, pending writes in
//! memory over it, exactly as the in-memory store keeps them. Still changelog-backed: the
//! changelog is the truth, local state is a cache of it that spares a full restore after a clean
//! close (see [`checkpoint`](super::checkpoint)).
//!
//! Layout: `<state dir>/<application id>/` holds a lock file, one fjall database (`db/`, one
//! keyspace per task and store) and `checkpoints/<task>/<store>`.

use std::cell::Cell;
use std::fs::{self, File};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode};

use super::checkpoint::Checkpoint;
use super::pending::PendingWrites;
use super::{is_empty_range, KeyValueBytesStore, KeyValueIterator, StateStore, StoreError, StoreSupplier};
use crate::topology::TaskId;

/// Left by a clean close (the last handle dropped, the process not killed); see [`CleanClose`].
const CLEAN_CLOSE_MARK: &str = "closed-cleanly";

/// Restored records are written in batches of this many: one journal write each.
const RESTORE_BATCH: usize = 10_000;

/// Memory the persistent stores may hold, as Kafka Streams bounds RocksDB's with a config setter.
/// Both are caches of what is on disk: smaller figures cost reads and more frequent flushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistentMemory {
    /// One block cache per instance, over all its stores.
    pub block_cache_bytes: u64,
    /// Writes each store (one per task) buffers in memory before flushing them to a table on
    /// disk. fjall's default, 64 MiB, grows to gigabytes over the stores of a few participants.
    pub memtable_bytes: u64,
}

impl Default for PersistentMemory {
    fn default() -> Self {
        PersistentMemory { block_cache_bytes: 16 * 1024 * 1024, memtable_bytes: 2 * 1024 * 1024 }
    }
}

/// The local state of one application instance; supplies a [`PersistentKeyValueStore`] per task
/// and store. Two instances cannot share it: the directory is locked while it is open.
#[derive(Clone)]
pub struct PersistentStores {
    db: Database,
    dir: PathBuf,
    memory: PersistentMemory,
    _clean_close: Arc<CleanClose>,
}

/// Holds the state directory's lock. When the last handle goes (a clean stop, not a kill) it makes
/// the database durable and leaves the mark that lets the next open trust fjall's files.
struct CleanClose {
    db: Database,
    mark: Checkpoint,
    _lock: File,
}

impl Drop for CleanClose {
    fn drop(&mut self) {
        let closed = self.db.persist(PersistMode::SyncAll).map_err(|e| e.to_string());
        if let Err(error) = closed.and_then(|()| self.mark.write(0).map_err(|e| e.to_string())) {
            tracing::warn!(%error, "local state could not be closed cleanly; the next start restores it in full");
        }
    }
}

impl PersistentStores {
    /// Opens `<state_dir>/<application_id>`, creating it if needed. Local state that does not
    /// open (corrupt, or written by an incompatible version) is wiped with a warning: the
    /// changelogs restore it.
    pub fn open(state_dir: &Path, application_id: &str, memory: PersistentMemory) -> Result<Self, StoreError> {
        let dir = state_dir.join(application_id);
        fs::create_dir_all(&dir)
            .map_err(|e| io_error(&format!("creating the state directory {}", dir.display()), e))?;
        let lock =
            File::create(dir.join(".lock")).map_err(|e| io_error("creating the state directory's lock file", e))?;
        lock.try_lock().map_err(|_| {
            StoreError::new(format!(
                "the state directory {} is in use by another instance; give every instance on a machine its own state directory",
                dir.display()
            ))
        })?;
        // Files a kill left are never opened: fjall 3.1's journal recovery can panic on them ("memtable
        // lsn does not match", seen under the SIGKILL soak), and under exactly-once a crash means a
        // full restore anyway. The mark goes before fjall writes anything.
        let mark = Checkpoint::at(dir.join(CLEAN_CLOSE_MARK));
        let closed_cleanly = mark.read().is_some();
        mark.remove().map_err(|e| io_error("removing the clean-close mark", e))?;
        if !closed_cleanly && dir.join("db").exists() {
            tracing::warn!(dir = %dir.display(), "local state was not closed cleanly (the instance crashed or was killed); wiping it, the changelogs restore it in full");
            wipe_local_state(&dir)?;
        }
        let db = match open_database(&dir, memory) {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "local state does not open; wiping it, the changelogs restore it");
                wipe_local_state(&dir)?;
                open_database(&dir, memory).map_err(|e| fjall_error("opening local state after wiping it", e))?
            }
        };
        let clean_close = CleanClose { db: db.clone(), mark, _lock: lock };
        Ok(PersistentStores { db, dir, memory, _clean_close: Arc::new(clean_close) })
    }

    /// Bytes free for an unprivileged writer on the filesystem that holds the local state.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let stats = rustix::fs::statvfs(&self.dir)
            .map_err(|e| io_error("reading the state directory's free space", e.into()))?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// Bytes the instance's local state takes on disk, journal included.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// Bytes held in memory: (write buffers, block cache). fjall marks both readings
    /// experimental; they are metrics only.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (self.db.write_buffer_size(), self.db.cache_size())
    }

    fn open_store(&self, name: &str, task: TaskId) -> Result<PersistentKeyValueStore, StoreError> {
        let keyspace = self
            .db
            .keyspace(&format!("{task}.{name}"), || {
                KeyspaceCreateOptions::default().max_memtable_size(self.memory.memtable_bytes)
            })
            .map_err(|e| fjall_error("opening a keyspace", e))?;
        let checkpoint = Checkpoint::at(self.dir.join("checkpoints").join(task.to_string()).join(name));
        let restore_from = checkpoint.read();
        // From here on local state may run ahead of any offset a checkpoint could name.
        checkpoint.remove().map_err(|e| io_error("removing a checkpoint", e))?;
        let mut store = PersistentKeyValueStore {
            name: name.to_owned(),
            db: self.db.clone(),
            keyspace,
            pending: PendingWrites::default(),
            restored: None,
            live: Cell::new(None),
            checkpoint,
            restore_from,
        };
        if restore_from.is_none() && !store.keyspace.is_empty().map_err(|e| fjall_error("reading local state", e))? {
            tracing::warn!(store = name, %task, "local state has no clean checkpoint (the instance crashed or was killed); wiping it and restoring the changelog in full");
            store.wipe()?;
        }
        Ok(store)
    }
}

fn wipe_local_state(dir: &Path) -> Result<(), StoreError> {
    for wiped in ["db", "checkpoints"] {
        match fs::remove_dir_all(dir.join(wiped)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error("wiping local state", e)),
            _ => {}
        }
    }
    Ok(())
}

fn open_database(dir: &Path, memory: PersistentMemory) -> fjall::Result<Database> {
    Database::builder(dir.join("db")).cache_size(memory.block_cache_bytes).open()
}

impl StoreSupplier for PersistentStores {
    fn build(&self, name: &str, task: TaskId) -> Result<Box<dyn StateStore>, StoreError> {
        Ok(Box::new(self.open_store(name, task)?))
    }
}

/// One task's store on disk.
pub struct PersistentKeyValueStore {
    name: String,
    db: Database,
    keyspace: Keyspace,
    pending: PendingWrites,
    /// Restored records not yet written.
    restored: Option<WriteBatch>,
    /// Committed live keys, counted by one scan and kept by each commit from then on. Unknown
    /// after a restore: its batches do not say whether a key was new. (fjall's own count
    /// includes deletes not yet compacted away.)
    live: Cell<Option<u64>>,
    checkpoint: Checkpoint,
    restore_from: Option<i64>,
}

impl PersistentKeyValueStore {
    fn write_restored(&mut self) -> Result<(), StoreError> {
        match self.restored.take() {
            Some(batch) => batch.commit().map_err(|e| self.write_failed(e)),
            None => Ok(()),
        }
    }

    fn write_failed(&self, e: fjall::Error) -> StoreError {
        fjall_error(&format!("writing local state of store '{}' (is the disk full?)", self.name), e)
    }
}

impl KeyValueBytesStore for PersistentKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(pending) = self.pending.get(key) {
            return Ok(pending.map(<[u8]>::to_vec));
        }
        let value = self.keyspace.get(key).map_err(|e| fjall_error("reading local state", e))?;
        Ok(value.map(|value| value.to_vec()))
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.pending.put(key, value);
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> KeyValueIterator<'_> {
        if is_empty_range(from, to) {
            return Box::new(std::iter::empty());
        }
        let bounds = (from.map(<[u8]>::to_vec), to.map(<[u8]>::to_vec));
        let committed = self
            .keyspace
            .range::<Vec<u8>, _>(bounds)
            .map(|guard| guard.into_inner().map_err(|e| fjall_error("reading local state", e)));
        Box::new(self.pending.merge_over(committed, from, to))
    }
}

impl StateStore for PersistentKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn savepoint(&mut self) {
        self.pending.savepoint();
    }

    fn rollback_to_savepoint(&mut self) {
        self.pending.rollback_to_savepoint();
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.write_restored()?;
        let writes = self.pending.take();
        if writes.is_empty() {
            return Ok(());
        }
        let mut live = self.live.get();
        let mut batch = self.db.batch();
        for (key, value) in writes {
            if let Some(count) = live.as_mut() {
                let existed = self.keyspace.contains_key(&key).map_err(|e| fjall_error("reading local state", e))?;
                match (existed, value.is_some()) {
                    (false, true) => *count += 1,
                    (true, false) => *count -= 1,
                    _ => {}
                }
            }
            match value {
                Some(value) => batch.insert(&self.keyspace, key, value),
                None => batch.remove(&self.keyspace, key),
            }
        }
        batch.commit().map_err(|e| self.write_failed(e))?;
        self.live.set(live);
        Ok(())
    }

    fn abort(&mut self) {
        self.pending.clear();
    }

    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.live.set(None);
        let batch = self.restored.get_or_insert_with(|| self.db.batch());
        match value {
            Some(value) => batch.insert(&self.keyspace, key, value),
            None => batch.remove(&self.keyspace, key),
        }
        if batch.len() >= RESTORE_BATCH {
            self.write_restored()?;
        }
        Ok(())
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        self.restored = None;
        self.restore_from = None;
        self.keyspace.clear().map_err(|e| self.write_failed(e))?;
        self.live.set(Some(0));
        Ok(())
    }

    fn entries(&self) -> Result<u64, StoreError> {
        if let Some(count) = self.live.get() {
            return Ok(count);
        }
        let count = self.keyspace.len().map_err(|e| fjall_error("counting local state", e))? as u64;
        self.live.set(Some(count));
        Ok(count)
    }

    fn is_persistent(&self) -> bool {
        true
    }

    fn restore_from(&self) -> Option<i64> {
        self.restore_from
    }

    fn checkpoint(&mut self, changelog_end: i64) -> Result<(), StoreError> {
        self.write_restored()?;
        // Flushed into tables, as Kafka Streams flushes RocksDB before its checkpoint: the next
        // open reads them instead of replaying the journal.
        self.keyspace.rotate_memtable_and_wait().map_err(|e| self.write_failed(e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.write_failed(e))?;
        self.checkpoint.write(changelog_end).map_err(|e| io_error("writing a checkpoint", e))
    }

    fn discard_checkpoint(&mut self) -> Result<(), StoreError> {
        self.checkpoint.remove().map_err(|e| io_error("removing a checkpoint", e))
    }

    fn disk_bytes(&self) -> u64 {
        self.keyspace.disk_space()
    }
}

fn fjall_error(during: &str, e: fjall::Error) -> StoreError {
    StoreError::new(format!("{during}: {e}"))
}

fn io_error(during: &str, e: std::io::Error) -> StoreError {
    StoreError::new(format!("{during}: {e}")).with_cause(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: TaskId = TaskId { subtopology: 0, partition: 3 };

    fn open(dir: &Path) -> (PersistentStores, PersistentKeyValueStore) {
        let stores = PersistentStores::open(dir, "app", PersistentMemory::default()).unwrap();
        let store = stores.open_store("counts", TASK).unwrap();
        (stores, store)
    }

    fn fresh() -> (tempfile::TempDir, PersistentKeyValueStore) {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = open(dir.path());
        (dir, store)
    }

    crate::store::contract::store_contract_tests!(fresh);

    fn committed(store: &mut PersistentKeyValueStore, entries: &[(&[u8], &[u8])]) {
        for (key, value) in entries {
            store.put(key, Some(value)).unwrap();
        }
        store.commit().unwrap();
    }

    #[test]
    fn a_clean_close_keeps_local_state_and_says_where_the_restore_starts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_stores, mut store) = open(dir.path());
            committed(&mut store, &[(b"a", b"1"), (b"b", b"2")]);
            store.checkpoint(17).unwrap();
        }
        let (_stores, store) = open(dir.path());
        assert_eq!(store.restore_from(), Some(17));
        assert_eq!(store.get(b"b").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn without_a_checkpoint_local_state_is_wiped_for_a_full_restore() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_stores, mut store) = open(dir.path());
            committed(&mut store, &[(b"a", b"1")]);
            store.checkpoint(5).unwrap();
        }
        {
            // Opened again, the checkpoint is gone; this run "crashes" after a write.
            let (_stores, mut store) = open(dir.path());
            committed(&mut store, &[(b"uncommitted-in-kafka", b"x")]);
        }
        let (_stores, store) = open(dir.path());
        assert_eq!(store.restore_from(), None);
        assert_eq!(store.get(b"a").unwrap(), None);
        assert_eq!(store.get(b"uncommitted-in-kafka").unwrap(), None);
    }

    #[test]
    fn local_state_a_kill_left_is_wiped_before_it_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_stores, mut store) = open(dir.path());
            committed(&mut store, &[(b"a", b"1")]);
            store.checkpoint(7).unwrap();
        }
        // A kill leaves the files but not the mark of a clean close.
        fs::remove_file(dir.path().join("app").join(CLEAN_CLOSE_MARK)).unwrap();
        let (_stores, store) = open(dir.path());
        assert_eq!(store.restore_from(), None, "even a store with a checkpoint restores in full");
        assert_eq!(store.get(b"a").unwrap(), None);
    }

    #[test]
    fn a_resumed_task_discards_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_stores, mut store) = open(dir.path());
            committed(&mut store, &[(b"a", b"1")]);
            store.checkpoint(9).unwrap();
            store.discard_checkpoint().unwrap();
            committed(&mut store, &[(b"a", b"2")]);
        }
        let (_stores, store) = open(dir.path());
        assert_eq!(store.restore_from(), None);
        assert_eq!(store.get(b"a").unwrap(), None);
    }

    #[test]
    fn corrupt_local_state_is_wiped_not_a_crash_loop() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_stores, mut store) = open(dir.path());
            committed(&mut store, &[(b"a", b"1")]);
            store.checkpoint(3).unwrap();
        }
        for entry in walk(&dir.path().join("app").join("db")) {
            fs::write(entry, b"\xde\xad garbage").unwrap();
        }
        let (_stores, store) = open(dir.path());
        assert_eq!(store.restore_from(), None, "a wiped store restores in full");
        assert_eq!(store.get(b"a").unwrap(), None);
    }

    #[test]
    fn two_instances_cannot_share_a_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = PersistentStores::open(dir.path(), "app", PersistentMemory::default()).unwrap();
        let error = PersistentStores::open(dir.path(), "app", PersistentMemory::default()).err().unwrap();
        assert!(error.to_string().contains("in use by another instance"), "{error}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else if !path.ends_with("lock") {
                files.push(path);
            }
        }
        files
    }
}
