//! The German-English parallel corpus (tab-separated source and target per line) and its
//! batching by length: pairs are grouped into a few padded lengths so that a batch wastes
//! little work on padding, and each group keeps one static graph shape.

use super::bpe::{Bpe, BOS, EOS, PAD};
use crate::error::{Error, Result};
use crate::util::rng::Rng;
use std::path::{Path, PathBuf};

/// The default data set (data/de-en-docs), from the working directory or the crate's.
pub fn default_dir() -> PathBuf {
    bundled("de-en-docs")
}

/// `data/NAME` under the working directory, else the crate's.
fn bundled(name: &str) -> PathBuf {
    let local = Path::new("data").join(name);
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(name)
    }
}

/// A data set by name: `ding` (data/de-en, dictionary example sentences), `docs`
/// (data/de-en-docs, documentation and game text), or a directory path.
pub fn data_dir(spec: &str) -> PathBuf {
    match spec {
        "ding" => bundled("de-en"),
        "docs" => bundled("de-en-docs"),
        path => PathBuf::from(path),
    }
}

/// The most bytes a gzip'd split may expand to.
pub const MAX_SPLIT_BYTES: u64 = 1 << 30;

/// The pairs of split `name` (train, valid, test) in `dir`: `NAME.tsv`, or `NAME.tsv.gz`.
pub fn read_split(dir: &Path, name: &str) -> Result<Vec<(String, String)>> {
    let plain = dir.join(format!("{name}.tsv"));
    let gz = dir.join(format!("{name}.tsv.gz"));
    if !plain.exists() && gz.exists() {
        let bytes = std::fs::read(&gz).map_err(|source| Error::Io { path: gz.display().to_string(), source })?;
        return parse_tsv(&crate::util::io::gunzip(&bytes, &gz, MAX_SPLIT_BYTES)?, &gz);
    }
    read_tsv(&plain)
}

/// Reads `source<TAB>target` lines; blank lines are skipped, any other line without exactly
/// one tab is an error naming it.
pub fn read_tsv(path: &Path) -> Result<Vec<(String, String)>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    parse_tsv(&bytes, path)
}

/// [`read_tsv`] of bytes already read from `path` (named in errors); text that is not UTF-8 is
/// an error naming the line.
pub fn parse_tsv(bytes: &[u8], path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Format { path: path.display().to_string(), msg: format!("line {line} is not UTF-8 text") }
    })?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split('\t');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(s), Some(t), None) => pairs.push((s.trim().to_string(), t.trim().to_string())),
            _ => {
                return Err(Error::Format {
                    path: path.display().to_string(),
                    msg: format!("line {} is not `source<TAB>target`", i + 1),
                })
            }
        }
    }
    Ok(pairs)
}

/// A tokenized pair without bos/eos.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub src: Vec<u32>,
    pub tgt: Vec<u32>,
}

impl Example {
    /// Padded length this pair needs: source + eos, and bos/eos + target.
    pub fn len(&self) -> usize {
        (self.src.len() + 1).max(self.tgt.len() + 1)
    }

    /// True when both sides are empty.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty() && self.tgt.is_empty()
    }
}

/// Tokenizes pairs; pairs longer than `max_len` tokens (with eos) are dropped and counted.
pub fn encode(bpe: &Bpe, pairs: &[(String, String)], max_len: usize) -> (Vec<Example>, usize) {
    encode_with(pairs, max_len, &|s, t| Example { src: bpe.encode(s), tgt: bpe.encode(t) })
}

/// [`encode`] with another tokenizer: `pair` gives a pair's ids without bos or eos.
pub fn encode_with(
    pairs: &[(String, String)],
    max_len: usize,
    pair: &dyn Fn(&str, &str) -> Example,
) -> (Vec<Example>, usize) {
    let all = pairs.iter().map(|(s, t)| pair(s, t));
    let (kept, dropped): (Vec<Example>, Vec<Example>) = all.partition(|e| e.len() <= max_len);
    (kept, dropped.len())
}

/// The ids a batch pads with, starts the decoder with and ends a sentence with: the BPE
/// vocabulary's, or a published model's (Marian starts its decoder with the pad id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specials {
    pub pad: u32,
    pub start: u32,
    pub eos: u32,
}

impl Specials {
    /// wgformer's BPE vocabulary's.
    pub const BPE: Specials = Specials { pad: PAD, start: BOS, eos: EOS };
}

impl Default for Specials {
    fn default() -> Self {
        Specials::BPE
    }
}

/// One padded batch of `rows` pairs at length `len`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub len: usize,
    pub rows: usize,
    /// (rows, len): source ids, eos, then pad.
    pub src: Vec<u32>,
    pub src_lens: Vec<u32>,
    /// (rows, len): bos, target ids, pad.
    pub tgt_in: Vec<u32>,
    /// (rows, len): target ids, eos, pad (ignored by the loss).
    pub tgt_out: Vec<u32>,
    /// Target tokens the loss counts (eos included).
    pub tokens: usize,
    /// The ids it pads, starts and ends with.
    pub specials: Specials,
}

impl Batch {
    /// Pads `examples` (at most `rows`, each at most `len` long) into a batch; missing rows are
    /// empty pairs whose targets are all padding, so they add nothing to the loss.
    pub fn new(examples: &[&Example], rows: usize, len: usize, specials: Specials) -> Self {
        let mut b = Batch::empty(rows, len, specials);
        for (r, e) in examples.iter().take(rows).enumerate() {
            let row = r * len;
            b.src[row..row + e.src.len()].copy_from_slice(&e.src);
            b.src[row + e.src.len()] = specials.eos;
            b.src_lens[r] = e.src.len() as u32 + 1;
            b.tgt_in[row + 1..row + 1 + e.tgt.len()].copy_from_slice(&e.tgt);
            b.tgt_out[row..row + e.tgt.len()].copy_from_slice(&e.tgt);
            b.tgt_out[row + e.tgt.len()] = specials.eos;
            b.tokens += e.tgt.len() + 1;
        }
        b
    }

    /// `rows` empty pairs (source: eos; target: bos in, padding out), which add nothing to
    /// the loss.
    fn empty(rows: usize, len: usize, specials: Specials) -> Self {
        let pad = specials.pad;
        let mut b = Batch {
            len,
            rows,
            src: vec![pad; rows * len],
            src_lens: vec![1; rows],
            tgt_in: vec![pad; rows * len],
            tgt_out: vec![pad; rows * len],
            tokens: 0,
            specials,
        };
        for r in 0..rows {
            b.src[r * len] = specials.eos;
            b.tgt_in[r * len] = specials.start;
        }
        b
    }

    /// Rank `rank`'s share of this batch among `ranks` (data-parallel training): rows
    /// `rank * per..` of `per = ceil(rows / ranks)`, padded with empty pairs to `per` rows,
    /// with its own count of target tokens (possibly 0).
    pub fn shard(&self, rank: usize, ranks: usize) -> Batch {
        let per = self.rows.div_ceil(ranks.max(1));
        let len = self.len;
        let mut b = Batch::empty(per, len, self.specials);
        let first = (rank * per).min(self.rows);
        let real = (self.rows - first).min(per);
        let (from, to) = (first * len..(first + real) * len, 0..real * len);
        b.src[to.clone()].copy_from_slice(&self.src[from.clone()]);
        b.tgt_in[to.clone()].copy_from_slice(&self.tgt_in[from.clone()]);
        b.tgt_out[to].copy_from_slice(&self.tgt_out[from]);
        b.src_lens[..real].copy_from_slice(&self.src_lens[first..first + real]);
        b.tokens = b.tgt_out.iter().filter(|&&t| t != self.specials.pad).count();
        b
    }
}

/// The padded lengths batches use, and the rows a batch of each holds for `tokens` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    pub lens: Vec<usize>,
    pub tokens: usize,
    /// The ids batches pad, start and end with.
    pub specials: Specials,
}

impl Buckets {
    /// The smallest bucket holding `len`, if any.
    pub fn of(&self, len: usize) -> Option<usize> {
        self.lens.iter().position(|&l| l >= len)
    }

    /// Rows per batch at bucket `i` (at least 1).
    pub fn rows(&self, i: usize) -> usize {
        (self.tokens / self.lens[i]).max(1)
    }

    /// The longest pair a bucket holds.
    pub fn max_len(&self) -> usize {
        self.lens.last().copied().unwrap_or(0)
    }

    /// One epoch of batches (bucket index, batch): shuffled within buckets, then the batch
    /// order shuffled.
    pub fn epoch(&self, examples: &[Example], rng: &mut Rng) -> Vec<(usize, Batch)> {
        let mut by_bucket: Vec<Vec<&Example>> = vec![Vec::new(); self.lens.len()];
        for e in examples {
            if let Some(i) = self.of(e.len()) {
                by_bucket[i].push(e);
            }
        }
        let mut batches = Vec::new();
        for (i, mut group) in by_bucket.into_iter().enumerate() {
            shuffle(&mut group, rng);
            for chunk in group.chunks(self.rows(i)) {
                batches.push((i, Batch::new(chunk, self.rows(i), self.lens[i], self.specials)));
            }
        }
        shuffle(&mut batches, rng);
        batches
    }
}

/// Fisher-Yates.
pub fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bundled_sets_read_whole_plain_or_gzip_d() {
        for (set, counts) in [("ding", [14_801, 822, 819]), ("docs", [78_559, 1_628, 1_700])] {
            for (split, want) in ["train", "valid", "test"].into_iter().zip(counts) {
                let pairs = read_split(&data_dir(set), split).unwrap();
                assert_eq!(pairs.len(), want, "{set} {split}");
                assert!(pairs.iter().all(|(s, t)| !s.is_empty() && !t.is_empty()), "{set} {split}");
            }
        }
        let err = read_split(&data_dir("no/such/dir"), "train").unwrap_err();
        assert!(err.to_string().contains("no/such/dir/train.tsv"), "{err}");
    }

    #[test]
    fn batches_pad_and_mark_lengths() {
        let e = Example { src: vec![7, 8], tgt: vec![9] };
        let b = Batch::new(&[&e], 2, 4, Specials::BPE);
        assert_eq!(b.src, [7, 8, EOS, PAD, EOS, PAD, PAD, PAD]);
        assert_eq!(b.src_lens, [3, 1]);
        assert_eq!(b.tgt_in, [BOS, 9, PAD, PAD, BOS, PAD, PAD, PAD]);
        assert_eq!(b.tgt_out, [9, EOS, PAD, PAD, PAD, PAD, PAD, PAD]);
        assert_eq!(b.tokens, 2);
    }

    #[test]
    fn shards_split_rows_and_tokens_and_pad_the_last() {
        let ex: Vec<Example> = (1..=3).map(|i| Example { src: vec![7; i], tgt: vec![9; i] }).collect();
        let b = Batch::new(&ex.iter().collect::<Vec<_>>(), 3, 5, Specials::BPE);
        let shards: Vec<Batch> = (0..2).map(|r| b.shard(r, 2)).collect();
        assert_eq!(shards.iter().map(|s| s.tokens).sum::<usize>(), b.tokens);
        assert_eq!((shards[0].rows, shards[0].tokens, shards[1].tokens), (2, 2 + 3, 4));
        assert_eq!(shards[0].src[..10], b.src[..10]);
        assert_eq!(shards[1].src[..5], b.src[10..]);
        assert_eq!(shards[1].src_lens, [4, 1]);
        assert_eq!(shards[1].tgt_out[5..], [PAD; 5]);
        assert_eq!(shards[1].tgt_in[5], BOS);
    }

    #[test]
    fn an_epoch_holds_every_example_once_in_its_bucket() {
        let examples: Vec<Example> =
            (0..50).map(|i| Example { src: vec![5; i % 9], tgt: vec![6; (i * 7) % 11] }).collect();
        let buckets = Buckets { lens: vec![4, 8, 12], tokens: 24, specials: Specials::BPE };
        let batches = buckets.epoch(&examples, &mut Rng::new(1));
        let real: usize = batches.iter().map(|(_, b)| b.tokens).sum();
        let want: usize = examples.iter().map(|e| e.tgt.len() + 1).sum();
        assert_eq!(real, want);
        for (i, b) in &batches {
            assert_eq!((b.len, b.rows), (buckets.lens[*i], buckets.rows(*i)));
        }
    }

    #[test]
    fn batches_use_the_models_special_ids() {
        // Marian: the decoder starts from the pad id, eos is 0.
        let sp = Specials { pad: 9, start: 9, eos: 0 };
        let e = Example { src: vec![5, 6], tgt: vec![7] };
        let b = Batch::new(&[&e], 2, 4, sp);
        assert_eq!(b.src, [5, 6, 0, 9, 0, 9, 9, 9]);
        assert_eq!(b.tgt_in, [9, 7, 9, 9, 9, 9, 9, 9]);
        assert_eq!(b.tgt_out, [7, 0, 9, 9, 9, 9, 9, 9]);
        assert_eq!((b.tokens, b.shard(0, 2).tokens, b.shard(1, 2).tokens), (2, 2, 0));
    }
}
