//! File writes that never leave a half-written file behind: write a temporary file in the same
//! folder, flush it to disk, then rename it over the target (rename is atomic within a file system).
//! Every atomic write in the crate (checkpoints, reports, splits, manifests, the feature cache, WAV
//! and PNG output) goes through [`write_atomically`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// The file name of `path` without its extension, as text (lossy), or "" when it has none.
pub fn file_stem_lossy(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Atomically replace `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Atomically replace `path` with what `write` writes. `write` fills a buffered temporary file beside
/// `path` (the folder is created if missing); the buffer is then flushed, the file synced to disk and
/// renamed over `path`. On any error the temporary file is removed and `path` is left as it was.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut writer = BufWriter::new(file);
    let result = write(&mut writer).and_then(|()| {
        // Flush explicitly: BufWriter's drop would swallow a failed final write (a full disk), and
        // the rename would then publish a truncated file. Sync before the rename so a crash cannot
        // leave an empty file under the final name.
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name used while writing `path`: hidden, in the same folder, unique per process and
/// call, so threads (or processes sharing a cache) writing the same path never share a temporary.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let call = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{call}.tmp", std::process::id()))
}

/// Whether a file name is one of [`temp_path`]'s: `.NAME.PID.CALL.tmp`.
pub fn is_temp_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = inner.rsplitn(3, '.');
    let numeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next()) && parts.next().is_some_and(|n| !n.is_empty())
}

/// Remove the temporaries of [`write_atomically`] under `dir` (recursively, not through symbolic
/// links) that a writer killed mid-write left behind; returns what was removed. Call it only while
/// no one else can be writing there (e.g. holding the run directory's lock).
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && is_temp_name(&entry.file_name().to_string_lossy()) {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                removed.push(path);
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// Create `dir` and its parents, naming the folder on failure.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rescnn-atomic-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_content_and_leaves_no_temporary() {
        let dir = scratch_dir("replace");
        let path = dir.join("sub").join("report.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(names(&dir.join("sub")), ["report.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let dir = scratch_dir("fail");
        let path = dir.join("model.ckpt");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomically(&path, |w| {
            w.write_all(b"half of the new").unwrap();
            Err(Error::io(&path, std::io::Error::other("disk full")))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(&dir), ["model.ckpt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_writers_of_one_path_never_share_a_temporary() {
        // With one temporary name per process, one thread's rename moved the other's half-written
        // file into place (or failed with "not found").
        let dir = scratch_dir("race");
        let path = dir.join("cache.spec");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(path, &[t; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|&b| b == bytes[0]), "mixed writers");
        assert_eq!(names(&dir), ["cache.spec"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = scratch_dir("stale");
        let sub = dir.join("checkpoints");
        std::fs::create_dir_all(&sub).unwrap();
        // What a writer killed between create and rename leaves: temp_path's own names.
        let tmp_top = temp_path(&dir.join("STATUS"));
        let tmp_sub = temp_path(&sub.join("last.safetensors"));
        for (p, text) in [
            (&tmp_top, "half"),
            (&tmp_sub, "half"),
            (&sub.join("last.safetensors"), "kept"),
            (&dir.join(".notes.tmp"), "kept: not a writer's name"),
            (&dir.join("run.tmp"), "kept"),
        ] {
            std::fs::write(p, text).unwrap();
        }
        let removed = remove_stale_temporaries(&dir).unwrap();
        let mut expected = vec![tmp_top.clone(), tmp_sub.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!tmp_top.exists() && !tmp_sub.exists());
        assert_eq!(names(&sub), ["last.safetensors"]);
        assert_eq!(names(&dir), [".notes.tmp", "checkpoints", "run.tmp"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_names_the_file() {
        // A path under a regular file cannot be created, even by root.
        let dir = scratch_dir("name");
        let blocker = dir.join("not-a-folder");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join("x.json");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("not-a-folder"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
