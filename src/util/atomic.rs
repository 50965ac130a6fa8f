//! Atomic and durable replacement of files and directories: a crash or a power cut leaves the
//! old version or the new one, never half of either.
//!
//! The order, for a directory: every file is written and synced in `DIR.tmp`, `DIR.tmp` itself
//! is synced (its entries), the old `DIR` is renamed to `DIR.old`, `DIR.tmp` to `DIR`, and the
//! parent is synced (the renames) before `DIR.old` is removed. A single file: written and
//! synced as `FILE.tmp`, renamed, the parent synced. Directory syncs exist on Unix; elsewhere
//! (Windows) they are skipped, as the platform has no such call.
//!
//! The file system is a trait ([`Fs`]) so that tests can record the sequence of calls.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The file-system calls an atomic replacement makes.
pub trait Fs {
    /// Creates (or truncates) `path`, writes `bytes` and syncs the file's data to disk.
    fn write_synced(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
    /// Syncs a directory's entries (a no-op where the platform cannot).
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()>;
    fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()>;
    /// A second name for `from`, or a synced copy where links fail.
    fn link_or_copy(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system.
pub struct RealFs;

impl Fs for RealFs {
    fn write_synced(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        if cfg!(unix) {
            std::fs::File::open(dir)?.sync_all()
        } else {
            Ok(())
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    fn link_or_copy(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        if std::fs::hard_link(from, to).is_ok() {
            return Ok(());
        }
        std::fs::copy(from, to)?;
        std::fs::File::open(to)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

/// `path` with `suffix` added to its file name.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The folder holding `path` (`.` for a bare name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` through a synced temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_in(&RealFs, path, bytes)
}

/// [`write_atomic`] through `fs`.
pub fn write_atomic_in(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = sibling(path, ".tmp");
    fs.write_synced(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    fs.rename(&tmp, path).map_err(|e| io_error(path, e))?;
    let dir = parent(path);
    fs.sync_dir(&dir).map_err(|e| io_error(&dir, e))
}

/// Replaces the directory `dir` with one holding exactly `files` (name, bytes), atomically and
/// durably (see the module docs).
pub fn write_dir_atomic(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    write_dir_atomic_in(&RealFs, dir, files, &[])
}

/// Puts back the directory a [`write_dir_atomic`] killed between its two renames left as
/// `dir.old` only (the previous complete version; `dir.tmp` may be incomplete). Does nothing
/// when `dir` exists or there is nothing to recover. Call it before reading `dir`.
pub fn recover_dir(dir: &Path) -> Result<()> {
    recover_dir_in(&RealFs, dir)
}

fn recover_dir_in(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let old = sibling(dir, ".old");
    if !fs.exists(dir) && old.is_dir() {
        fs.rename(&old, dir).map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}

/// Where a linked file of [`write_dir_atomic_keeping`] comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkFrom {
    /// A file outside the new directory (one of an earlier checkpoint).
    File(PathBuf),
    /// One of the files written in the same call (a second name for it).
    Written(String),
}

/// [`write_dir_atomic`], plus `keep` (source, name): files linked into the new directory under
/// `name` by a hard link (a copy where links fail), so that large files are not written twice.
pub fn write_dir_atomic_keeping(dir: &Path, files: &[(&str, Vec<u8>)], keep: &[(LinkFrom, String)]) -> Result<()> {
    write_dir_atomic_in(&RealFs, dir, files, keep)
}

/// [`write_dir_atomic_keeping`] through `fs`.
pub fn write_dir_atomic_in(
    fs: &dyn Fs,
    dir: &Path,
    files: &[(&str, Vec<u8>)],
    keep: &[(LinkFrom, String)],
) -> Result<()> {
    recover_dir_in(fs, dir)?;
    let tmp = sibling(dir, ".tmp");
    let old = sibling(dir, ".old");
    if fs.exists(&tmp) {
        fs.remove_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
    }
    fs.create_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
    for (name, bytes) in files {
        let p = tmp.join(name);
        fs.write_synced(&p, bytes).map_err(|e| io_error(&p, e))?;
    }
    for (source, name) in keep {
        let source = match source {
            LinkFrom::File(path) => path.clone(),
            LinkFrom::Written(name) => tmp.join(name),
        };
        fs.link_or_copy(&source, &tmp.join(name)).map_err(|e| io_error(&source, e))?;
    }
    fs.sync_dir(&tmp).map_err(|e| io_error(&tmp, e))?;
    if fs.exists(&old) {
        fs.remove_dir_all(&old).map_err(|e| io_error(&old, e))?;
    }
    if fs.exists(dir) {
        fs.rename(dir, &old).map_err(|e| io_error(dir, e))?;
    }
    fs.rename(&tmp, dir).map_err(|e| io_error(dir, e))?;
    let up = parent(dir);
    fs.sync_dir(&up).map_err(|e| io_error(&up, e))?;
    if fs.exists(&old) {
        fs.remove_dir_all(&old).map_err(|e| io_error(&old, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The real file system, with every call written down.
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn log(&self, what: String) {
            self.0.lock().unwrap().push(what);
        }
    }

    fn name(p: &Path) -> String {
        p.file_name().map_or("?".into(), |n| n.to_string_lossy().into_owned())
    }

    impl Fs for Recorder {
        fn write_synced(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
            self.log(format!("write+sync {}", name(path)));
            RealFs.write_synced(path, bytes)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.log(format!("sync dir {}", name(dir)));
            RealFs.sync_dir(dir)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.log(format!("rename {} -> {}", name(from), name(to)));
            RealFs.rename(from, to)
        }
        fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            self.log(format!("mkdir {}", name(dir)));
            RealFs.create_dir_all(dir)
        }
        fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            self.log(format!("remove {}", name(dir)));
            RealFs.remove_dir_all(dir)
        }
        fn link_or_copy(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.log(format!("link {} -> {}", name(from), name(to)));
            RealFs.link_or_copy(from, to)
        }
        fn exists(&self, path: &Path) -> bool {
            RealFs.exists(path)
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("unit-scratch").join(tag);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn a_replaced_directory_is_synced_before_and_after_its_renames() {
        let root = scratch("durable-dir");
        let dir = root.join("ck");
        write_dir_atomic(&dir, &[("a", b"0".to_vec())]).unwrap();
        let fs = Recorder(Mutex::new(Vec::new()));
        let keep = [(LinkFrom::Written("a".into()), "b".to_string())];
        write_dir_atomic_in(&fs, &dir, &[("a", b"1".to_vec())], &keep).unwrap();
        let calls = fs.0.into_inner().unwrap();
        let want = [
            "mkdir ck.tmp",
            "write+sync a",
            "link a -> b",
            "sync dir ck.tmp",
            "rename ck -> ck.old",
            "rename ck.tmp -> ck",
            "sync dir ck-parent",
            "remove ck.old",
        ];
        let calls: Vec<String> = calls.into_iter().map(|c| c.replace("durable-dir", "ck-parent")).collect();
        assert_eq!(calls, want);
        assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"1");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_replaced_file_is_synced_then_renamed_then_its_folder_synced() {
        let root = scratch("durable-file");
        let fs = Recorder(Mutex::new(Vec::new()));
        write_atomic_in(&fs, &root.join("f.json"), b"{}").unwrap();
        let calls = fs.0.into_inner().unwrap();
        assert_eq!(calls, ["write+sync f.json.tmp", "rename f.json.tmp -> f.json", "sync dir durable-file"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
