//! Fashion-MNIST: the IDX files (gzip'd, as bundled in data/fashion-mnist), shuffled batches of
//! normalised pixels.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The ten Fashion-MNIST classes, by label.
pub const CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Mean and standard deviation of the training pixels (scaled to [0, 1]).
pub const MEAN: f32 = 0.2860;
pub const STD: f32 = 0.3530;

/// Grey images with labels.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// count x rows x cols bytes.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

/// Which part of the data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format { path: path.display().to_string(), msg: msg.into() }
}

/// The most bytes a gzip'd IDX file may expand to (Fashion-MNIST's largest: 47 MB): a small
/// file that claims more is refused instead of filling memory.
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// Expands gzip'd bytes (from `path`, for errors), at most [`MAX_IDX_BYTES`].
pub fn gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    crate::util::io::gunzip(bytes, path, MAX_IDX_BYTES)
}

fn be_u32(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
}

/// Parses IDX bytes with magic 0x0000080N and N dimensions; returns (dims, data). `path`
/// names the file in errors.
pub fn parse_idx(path: &Path, bytes: &[u8], dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let header = 4 + 4 * dims;
    if bytes.len() < header || bytes[..3] != [0, 0, 8] || bytes[3] as usize != dims {
        return Err(bad(path, format!("not an IDX file of {dims}-dimensional u8 data")));
    }
    let shape: Vec<usize> = (0..dims).map(|i| be_u32(bytes, 4 + 4 * i)).collect();
    // Checked: a header's dimensions can multiply past usize.
    let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let Some(len) = len.filter(|&n| n <= bytes.len() - header) else {
        return Err(bad(path, format!("header says {shape:?}, more than the file's {} bytes", bytes.len() - header)));
    };
    if bytes.len() != header + len {
        return Err(bad(path, format!("header says {shape:?} ({len} bytes), file holds {}", bytes.len() - header)));
    }
    Ok((shape, bytes[header..].to_vec()))
}

/// The bundled copy: `data/fashion-mnist` under the current directory, else the source tree's.
pub fn default_dir() -> PathBuf {
    let local = PathBuf::from("data/fashion-mnist");
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist")
    }
}

/// Loads one split from a directory of the four standard IDX files.
pub fn load(dir: &Path, split: Split) -> Result<ImageSet> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let (ip, lp) =
        (dir.join(format!("{prefix}-images-idx3-ubyte.gz")), dir.join(format!("{prefix}-labels-idx1-ubyte.gz")));
    let read = |p: &Path| std::fs::read(p).map_err(|source| Error::Io { path: p.display().to_string(), source });
    from_gz(&read(&ip)?, &read(&lp)?, (&ip, &lp))
}

/// An image set from the gzip'd IDX bytes of its images and labels (fetched by a browser
/// page, say); `names` name the two files in errors.
pub fn from_gz(images_gz: &[u8], labels_gz: &[u8], names: (&Path, &Path)) -> Result<ImageSet> {
    let (ip, lp) = names;
    let (shape, pixels) = parse_idx(ip, &gunzip(images_gz, ip)?, 3)?;
    let (lshape, labels) = parse_idx(lp, &gunzip(labels_gz, lp)?, 1)?;
    if lshape[0] != shape[0] {
        return Err(bad(lp, format!("{} labels for {} images", lshape[0], shape[0])));
    }
    if let Some(l) = labels.iter().find(|&&l| l as usize >= CLASSES.len()) {
        return Err(bad(lp, format!("label {l} is not a class")));
    }
    Ok(ImageSet { pixels, labels, rows: shape[1], cols: shape[2] })
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * self.rows * self.cols);
    }

    /// Normalised pixels (B, 1, rows, cols) and labels of the images at `indices`.
    pub fn batch(&self, indices: &[usize], pixels: &mut Vec<f32>, labels: &mut Vec<u32>) {
        let n = self.rows * self.cols;
        pixels.clear();
        labels.clear();
        for &i in indices {
            pixels.extend(self.pixels[i * n..(i + 1) * n].iter().map(|&p| (p as f32 / 255.0 - MEAN) / STD));
            labels.push(self.labels[i] as u32);
        }
    }

    /// The order of one epoch: a shuffle seeded by (seed, epoch), so a resumed run repeats it.
    pub fn epoch_order(&self, seed: u64, epoch: usize) -> Vec<usize> {
        let mut rng = crate::util::rng::Rng::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order: Vec<usize> = (0..self.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        order
    }
}
