//! Where a run keeps its checkpoint: a set of named files, replaced as a whole. Natively a
//! directory (replaced atomically and durably, see `util::atomic`); in a browser, bytes in
//! memory that the page can download and hand back.

use crate::error::{Error, Result};
use crate::util::io::LinkFrom;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A checkpoint's files, read one at a time and replaced together.
pub trait Storage {
    /// The file `name` of the current checkpoint; `None` when there is no such file (or no
    /// checkpoint yet).
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces the checkpoint with `files`, plus `keep`: (file of the current checkpoint or
    /// one of `files`, new name) carried over without writing it again.
    fn replace(&mut self, files: Vec<(&str, Vec<u8>)>, keep: Vec<(String, String)>) -> Result<()>;
    /// Every file of the current checkpoint (name, bytes), by name: what a page offers for
    /// download.
    fn files(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Where the checkpoint is, for messages ("runs/vit", "memory").
    fn place(&self) -> String;
    /// The directory the checkpoint is read from, where it is one (native runs with extra
    /// files on disk).
    fn dir(&self) -> Option<&Path> {
        None
    }
    /// The directory checkpoints are written to, where it is one.
    fn write_dir(&self) -> Option<&Path> {
        None
    }
}

/// [`Storage::read`] for a file the checkpoint must have.
pub fn read_required(storage: &dyn Storage, name: &str) -> Result<Vec<u8>> {
    storage.read(name)?.ok_or_else(|| Error::Format {
        path: format!("{}/{name}", storage.place()),
        msg: "missing from the checkpoint".into(),
    })
}

/// [`read_required`] as UTF-8 text.
pub fn read_text(storage: &dyn Storage, name: &str) -> Result<String> {
    String::from_utf8(read_required(storage, name)?)
        .map_err(|_| Error::Format { path: format!("{}/{name}", storage.place()), msg: "is not UTF-8 text".into() })
}

/// A checkpoint directory. A resumed run can read from one directory and write to another:
/// it reads `from` until its first write, then `dir`.
pub struct DirStorage {
    from: PathBuf,
    dir: PathBuf,
}

impl DirStorage {
    /// Reads and writes `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        DirStorage { from: dir.clone(), dir }
    }

    /// Reads `from` (a run to resume) and writes `dir`.
    pub fn resuming(from: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        DirStorage { from: from.into(), dir: dir.into() }
    }
}

impl Storage for DirStorage {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        // A run killed while it replaced the checkpoint left the previous one as DIR.old.
        crate::util::io::recover_dir(&self.from)?;
        let path = self.from.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path: path.display().to_string(), source }),
        }
    }

    fn replace(&mut self, files: Vec<(&str, Vec<u8>)>, keep: Vec<(String, String)>) -> Result<()> {
        let written: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        let keep: Vec<(LinkFrom, String)> = keep
            .into_iter()
            .map(|(source, name)| match written.contains(&source.as_str()) {
                true => (LinkFrom::Written(source), name),
                false => (LinkFrom::File(self.from.join(source)), name),
            })
            .collect();
        crate::util::io::write_dir_atomic_keeping(&self.dir, &files, &keep)?;
        self.from = self.dir.clone();
        Ok(())
    }

    fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        crate::util::io::recover_dir(&self.from)?;
        let io = |source| Error::Io { path: self.from.display().to_string(), source };
        let mut names: Vec<String> = std::fs::read_dir(&self.from)
            .map_err(io)?
            .flatten()
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names.into_iter().map(|n| Ok((n.clone(), read_required(self, &n)?))).collect()
    }

    fn place(&self) -> String {
        self.dir.display().to_string()
    }

    fn dir(&self) -> Option<&Path> {
        Some(&self.from)
    }

    fn write_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}

/// A checkpoint held in memory (browsers; tests).
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl MemoryStorage {
    /// A checkpoint made of these files (one the user uploaded, say).
    pub fn with_files(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        MemoryStorage { files: files.into_iter().collect() }
    }
}

impl Storage for MemoryStorage {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.files.get(name).cloned())
    }

    fn replace(&mut self, files: Vec<(&str, Vec<u8>)>, keep: Vec<(String, String)>) -> Result<()> {
        let mut next: BTreeMap<String, Vec<u8>> = files.into_iter().map(|(n, b)| (n.to_string(), b)).collect();
        for (source, name) in keep {
            let bytes = next.get(&source).or_else(|| self.files.get(&source)).cloned().ok_or_else(|| {
                Error::Format { path: format!("memory/{source}"), msg: "kept but not in the checkpoint".into() }
            })?;
            next.insert(name, bytes);
        }
        self.files = next;
        Ok(())
    }

    fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self.files.iter().map(|(n, b)| (n.clone(), b.clone())).collect())
    }

    fn place(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_replaces_the_whole_checkpoint_and_keeps_named_files() {
        let mut s = MemoryStorage::default();
        s.replace(vec![("a", vec![1]), ("b", vec![2])], vec![]).unwrap();
        s.replace(vec![("c", vec![3])], vec![("a".into(), "a2".into()), ("c".into(), "c2".into())]).unwrap();
        assert_eq!(s.read("b").unwrap(), None, "a replace drops files not written or kept");
        assert_eq!(s.read("a2").unwrap(), Some(vec![1]));
        assert_eq!(s.read("c2").unwrap(), Some(vec![3]));
        assert!(s.replace(vec![], vec![("zz".into(), "y".into())]).is_err());
        assert_eq!(s.read("c").unwrap(), Some(vec![3]), "a failed replace leaves the checkpoint as it was");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let s = MemoryStorage::default();
        let e = read_required(&s, "config.json").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }
}
