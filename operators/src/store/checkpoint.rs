//! A store's `.checkpoint`, after Kafka Streams': the changelog offset its local state is complete
//! up to, written only when the task closes cleanly and removed as soon as the store is opened
//! again, so that a crash can never leave one that overstates what is on disk.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

pub(super) struct Checkpoint {
    path: PathBuf,
}

impl Checkpoint {
    pub(super) fn at(path: PathBuf) -> Self {
        Checkpoint { path }
    }

    /// The offset a clean close recorded. A file that does not parse is no checkpoint.
    pub(super) fn read(&self) -> Option<i64> {
        let text = fs::read_to_string(&self.path).ok()?;
        match text.trim().parse::<i64>() {
            Ok(offset) if offset >= 0 => Some(offset),
            _ => {
                tracing::warn!(path = %self.path.display(), "ignoring a checkpoint that does not hold an offset");
                None
            }
        }
    }

    /// Written to a temporary file, synced, then renamed and the rename synced: a torn write is
    /// never read as an offset, and a power loss cannot undo the checkpoint once this returns.
    pub(super) fn write(&self, offset: i64) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let temporary = self.path.with_extension("tmp");
        let mut file = fs::File::create(&temporary)?;
        file.write_all(offset.to_string().as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        self.sync_directory()
    }

    /// The removal is synced before local state changes: after a power loss a checkpoint that
    /// came back would overstate what is on disk.
    pub(super) fn remove(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(()) => self.sync_directory(),
        }
    }

    fn sync_directory(&self) -> io::Result<()> {
        match self.path.parent() {
            Some(dir) => fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_written_is_read_back_and_gone_once_removed() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Checkpoint::at(dir.path().join("task").join("store"));
        assert_eq!(checkpoint.read(), None);
        checkpoint.write(42).unwrap();
        assert_eq!(checkpoint.read(), Some(42));
        checkpoint.remove().unwrap();
        assert_eq!(checkpoint.read(), None);
        checkpoint.remove().unwrap();
    }

    #[test]
    fn a_file_that_holds_no_offset_is_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        fs::write(&path, "not an offset").unwrap();
        assert_eq!(Checkpoint::at(path.clone()).read(), None);
        fs::write(&path, "-3").unwrap();
        assert_eq!(Checkpoint::at(path).read(), None);
    }
}
