//! Files: safetensors read and write, bounded gunzip; the atomic, durable writes of
//! checkpoints live in `util::atomic` and are re-exported here.

use crate::error::{Error, Result};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use std::path::Path;

pub use super::atomic::{recover_dir, write_atomic, write_dir_atomic, write_dir_atomic_keeping, LinkFrom};

/// The values of one stored tensor, widened to the types wgformer computes with.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

/// One named tensor from a safetensors file.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl NamedTensor {
    /// The values as f32, or an error naming the tensor and `path`.
    pub fn f32(&self, path: &Path) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            other => Err(format_error(path, format!("tensor {} is {}, expected f32", self.name, kind(other)))),
        }
    }
}

fn kind(d: &TensorData) -> &'static str {
    match d {
        TensorData::F32(_) => "f32",
        TensorData::I64(_) => "i64",
        TensorData::U8(_) => "u8",
    }
}

fn format_error(path: &Path, msg: String) -> Error {
    Error::Format { path: path.display().to_string(), msg }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

/// Reads every tensor of a safetensors file (f32, f16, bf16 widened to f32; i64; u8).
pub fn read_safetensors(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    parse_safetensors(&bytes, path)
}

/// Every tensor of safetensors bytes (`origin` names them in errors): for data that does not
/// come from a file, such as a browser's bundled weights.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<Vec<NamedTensor>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format_error(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            StDtype::F32 => TensorData::F32(bytemuck::pod_collect_to_vec(raw)),
            StDtype::F16 => {
                TensorData::F32(raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
            }
            StDtype::BF16 => {
                TensorData::F32(raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
            }
            StDtype::I64 => TensorData::I64(bytemuck::pod_collect_to_vec(raw)),
            StDtype::U8 | StDtype::BOOL => TensorData::U8(raw.to_vec()),
            other => return Err(format_error(path, format!("tensor {name} has unsupported type {other:?}"))),
        };
        out.push(NamedTensor { name, shape: view.shape().to_vec(), data });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Serialises f32 tensors (name, shape, values) into safetensors bytes.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, &[f32])]) -> Result<Vec<u8>> {
    safetensors_bytes_with(tensors, None)
}

/// [`safetensors_bytes`] with the header's `__metadata__` (transformers marks its files with
/// `format: pt`).
pub fn safetensors_bytes_with(
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(StDtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::shape("safetensors", format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata).map_err(|e| Error::shape("safetensors", e.to_string()))
}

/// Expands gzip'd bytes read from `path` (named in errors), refusing more than `max` bytes:
/// a small file that claims gigabytes is an error, not a full memory.
pub fn gunzip(bytes: &[u8], path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("not gzip data: {e}")))?;
    if out.len() as u64 > max {
        return Err(bad(format!("expands to over {max} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::atomic::sibling;

    /// A scratch folder under the build's target directory.
    fn scratch() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("unit-scratch")
    }

    #[test]
    fn a_directory_killed_between_its_renames_is_recovered_from_old() {
        let root = scratch().join(format!("wgformer-io-recover-{}", std::process::id()));
        let dir = root.join("ck");
        write_dir_atomic(&dir, &[("a", b"1".to_vec())]).unwrap();
        // The state a kill between the two renames leaves: DIR.old complete, DIR.tmp new, no DIR.
        std::fs::rename(&dir, sibling(&dir, ".old")).unwrap();
        std::fs::create_dir_all(sibling(&dir, ".tmp")).unwrap();
        recover_dir(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"1");
        write_dir_atomic(&dir, &[("a", b"2".to_vec())]).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"2");
        assert!(!sibling(&dir, ".old").exists() && !sibling(&dir, ".tmp").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_replaced_directory_holds_the_new_files_and_the_kept_ones() {
        let root = scratch().join(format!("wgformer-io-{}", std::process::id()));
        let dir = root.join("ck");
        write_dir_atomic(&dir, &[("a", b"1".to_vec()), ("b", b"2".to_vec())]).unwrap();
        let keep = [(LinkFrom::File(dir.join("b")), "c".to_string()), (LinkFrom::Written("a".into()), "d".to_string())];
        write_dir_atomic_keeping(&dir, &[("a", b"3".to_vec())], &keep).unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["a", "c", "d"]);
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"3");
        assert_eq!(std::fs::read(dir.join("c")).unwrap(), b"2");
        assert_eq!(std::fs::read(dir.join("d")).unwrap(), b"3");
        assert!(!sibling(&dir, ".tmp").exists() && !sibling(&dir, ".old").exists());
        let missing = [(LinkFrom::File(dir.join("nope")), "e".to_string())];
        assert!(write_dir_atomic_keeping(&dir, &[], &missing).is_err(), "a missing kept file is an error");
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"3", "and leaves the old directory as it was");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
