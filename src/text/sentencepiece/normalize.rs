//! SentencePiece's normalizer: the precompiled character map of the model file (a darts-clone
//! double-array trie of UTF-8 byte sequences, each mapped to a replacement in a string pool; for
//! `nmt_nfkc`, NFKC and the NMT rules), applied by longest match from left to right, then the
//! whitespace rules: leading, trailing and repeated spaces removed, a dummy prefix space added,
//! spaces written as U+2581.

use super::proto::NormalizerSpec;
use crate::error::{Error, Result};

/// The word-boundary mark pieces carry in place of spaces.
pub const SPACE: &str = "\u{2581}";

/// The precompiled character map: the trie's units and the replacement strings.
#[derive(Clone, Debug, Default)]
struct CharsMap {
    units: Vec<u32>,
    pool: Vec<u8>,
}

impl CharsMap {
    /// Reads the blob: a u32 (little-endian) trie size in bytes, the trie, the string pool.
    fn parse(blob: &[u8], path: &str) -> Result<Self> {
        let bad = || Error::Format { path: path.to_string(), msg: "its precompiled character map is damaged".into() };
        if blob.is_empty() {
            return Ok(CharsMap::default());
        }
        let size = blob.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize).ok_or_else(bad)?;
        let trie = blob.get(4..4 + size).filter(|t| t.len() % 4 == 0).ok_or_else(bad)?;
        let units = trie.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(CharsMap { units, pool: blob[4 + size..].to_vec() })
    }

    /// The longest prefix of `key` the trie holds: (its length, its replacement).
    fn longest_prefix(&self, key: &[u8]) -> Option<(usize, &[u8])> {
        let unit = |i: usize| self.units.get(i).copied();
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let label = |u: u32| u & ((1 << 31) | 0xff);
        let mut pos = offset(unit(0)?);
        let mut best = None;
        for (i, &b) in key.iter().enumerate() {
            pos ^= b as usize;
            let u = unit(pos)?;
            if label(u) != b as u32 {
                break;
            }
            pos ^= offset(u);
            if has_leaf(u) {
                let value = (unit(pos)? & 0x7fff_ffff) as usize;
                best = Some((i + 1, value));
            }
        }
        let (len, value) = best?;
        let rest = self.pool.get(value..)?;
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        Some((len, &rest[..end]))
    }
}

/// A model's normalizer.
#[derive(Clone, Debug)]
pub struct Normalizer {
    map: CharsMap,
    spec: NormalizerSpec,
    suffix: bool,
}

impl Normalizer {
    pub fn new(spec: NormalizerSpec, treat_whitespace_as_suffix: bool, path: &str) -> Result<Self> {
        Ok(Normalizer {
            map: CharsMap::parse(&spec.precompiled_charsmap, path)?,
            spec,
            suffix: treat_whitespace_as_suffix,
        })
    }

    /// The normalized form of the first characters of `input`, and how many bytes it took.
    fn prefix<'a>(&'a self, input: &'a [u8]) -> (&'a [u8], usize) {
        if let Some((len, out)) = self.map.longest_prefix(input) {
            return (out, len);
        }
        // No rule: one character as it is; a malformed byte reads as U+FFFD.
        for k in 1..=input.len().min(4) {
            if std::str::from_utf8(&input[..k]).is_ok() {
                return (&input[..k], k);
            }
        }
        ("\u{fffd}".as_bytes(), 1)
    }

    /// `text` as the model sees it.
    pub fn normalize(&self, text: &str) -> String {
        let (spec, mut input) = (&self.spec, text.as_bytes());
        if spec.remove_extra_whitespaces {
            while !input.is_empty() {
                let (p, n) = self.prefix(input);
                if p != b" " {
                    break;
                }
                input = &input[n..];
            }
        }
        if input.is_empty() {
            return String::new();
        }
        let space: &[u8] = if spec.escape_whitespaces { SPACE.as_bytes() } else { b" " };
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 3);
        if !self.suffix && spec.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        let mut prev_space = spec.remove_extra_whitespaces;
        while !input.is_empty() {
            let (mut p, n) = self.prefix(input);
            while prev_space && p.first() == Some(&b' ') {
                p = &p[1..];
            }
            if !p.is_empty() {
                for &c in p {
                    match c == b' ' {
                        true => out.extend_from_slice(space),
                        false => out.push(c),
                    }
                }
                prev_space = p.last() == Some(&b' ');
            }
            input = &input[n..];
            if !spec.remove_extra_whitespaces {
                prev_space = false;
            }
        }
        if spec.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        if self.suffix && spec.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
