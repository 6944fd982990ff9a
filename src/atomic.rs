//! Whole-file writes that a crash cannot leave half done: write a hidden temporary file beside
//! the target, flush it to disk, then rename it over the target.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The hidden temporary name used while `target` is being written.
#[must_use]
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `target` through `write`, atomically. On error the temporary file is removed and
/// `target` is untouched. `io` makes the caller's error (naming `target`) of an I/O error in
/// creating, syncing or renaming the file; `write` reports its own errors.
pub fn write_atomically<E>(target: &Path, write: impl FnOnce(File) -> Result<File, E>, io: impl Fn(io::Error) -> E) -> Result<(), E> {
    let tmp = temp_path(target);
    write_synced(&tmp, write, &io)?;
    publish(&tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Writes `path` through `write` and flushes it to disk; on error `path` is removed.
pub fn write_synced<E>(path: &Path, write: impl FnOnce(File) -> Result<File, E>, io: impl Fn(io::Error) -> E) -> Result<(), E> {
    let result = File::create(path).map_err(&io).and_then(write).and_then(|f| f.sync_all().map_err(&io));
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Renames a written and synced file over `target`, then persists the rename (a directory
/// that cannot be opened for sync is not fatal).
pub fn publish(written: &Path, target: &Path) -> io::Result<()> {
    std::fs::rename(written, target)?;
    if let Some(dir) = target.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
