//! SentencePiece tokenization as Google's library does it, for Marian's source.spm and
//! target.spm: the model file (`proto.rs`), normalization (`normalize.rs`), unigram (Viterbi
//! over the pieces' scores) and BPE (merges by score) segmentation, and decoding. Tested
//! against Python's `sentencepiece` on models trained with it (tests/data/sentencepiece).

mod normalize;
mod proto;

pub use normalize::SPACE;
pub use proto::{ModelProto, Piece, PieceType};

use crate::error::{Error, Result};
use normalize::Normalizer;
use std::collections::HashMap;

/// Unigram's penalty for an unknown character, below the lowest piece score.
const UNK_PENALTY: f32 = 10.0;

/// A SentencePiece model ready to encode and decode.
#[derive(Clone, Debug)]
pub struct SentencePiece {
    model: ModelProto,
    normalizer: Normalizer,
    /// Normal, user-defined and unused pieces by text (what segmentation may produce).
    pieces: HashMap<String, u32>,
    /// Control, unknown and byte pieces by text.
    reserved: HashMap<String, u32>,
    unk_id: u32,
    /// The longest piece, in bytes.
    max_len: usize,
    min_score: f32,
    max_score: f32,
}

impl SentencePiece {
    /// Reads a model file's bytes (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self> {
        let model = proto::parse(bytes, path)?;
        let bad = |msg: String| Error::Format { path: path.to_string(), msg };
        if !matches!(model.model_type, 1 | 2) {
            return Err(bad(format!("model type {} is not supported (unigram and BPE are)", model.model_type)));
        }
        let normalizer = Normalizer::new(model.normalizer.clone(), model.treat_whitespace_as_suffix, path)?;
        let (mut pieces, mut reserved, mut unk_id) = (HashMap::new(), HashMap::new(), None);
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN);
        for (i, p) in model.pieces.iter().enumerate() {
            let id = i as u32;
            let map = match p.kind {
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused => &mut pieces,
                _ => &mut reserved,
            };
            if map.insert(p.piece.clone(), id).is_some() {
                return Err(bad(format!("the piece {:?} is there twice", p.piece)));
            }
            if p.kind == PieceType::Unknown {
                unk_id = Some(id);
            }
            if p.kind == PieceType::Normal {
                min_score = min_score.min(p.score);
                max_score = max_score.max(p.score);
            }
        }
        let unk_id = unk_id.ok_or_else(|| bad("has no unknown piece".into()))?;
        let max_len = pieces.keys().map(String::len).max().unwrap_or(1);
        Ok(SentencePiece { model, normalizer, pieces, reserved, unk_id, max_len, min_score, max_score })
    }

    /// Reads a model file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Pieces in the vocabulary.
    pub fn len(&self) -> usize {
        self.model.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.model.pieces.is_empty()
    }

    /// The id of the unknown piece.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// A piece's id (the unknown id for a piece not in the vocabulary).
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        self.reserved.get(piece).or_else(|| self.pieces.get(piece)).copied().unwrap_or(self.unk_id)
    }

    /// An id's piece (`None` past the vocabulary).
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.model.pieces.get(id as usize).map(|p| p.piece.as_str())
    }

    fn kind(&self, id: u32) -> PieceType {
        self.model.pieces.get(id as usize).map_or(PieceType::Unknown, |p| p.kind)
    }

    /// `text` normalized as the model does before segmenting it.
    pub fn normalize(&self, text: &str) -> String {
        self.normalizer.normalize(text)
    }

    /// The pieces of `text` with their ids; runs of unknown characters are one unknown piece.
    pub fn encode_pieces(&self, text: &str) -> Vec<(String, u32)> {
        let normalized = self.normalize(text);
        let segments = match self.model.model_type {
            2 => self.bpe(&normalized),
            _ => self.unigram(&normalized),
        };
        let mut out: Vec<(String, u32)> = Vec::with_capacity(segments.len());
        for (piece, id) in segments {
            match out.last_mut() {
                Some((last, last_id)) if id == self.unk_id && *last_id == self.unk_id => last.push_str(piece),
                _ => out.push((piece.to_string(), id)),
            }
        }
        out
    }

    /// The ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_pieces(text).into_iter().map(|(_, id)| id).collect()
    }

    /// The best segmentation by the sum of the pieces' scores (Viterbi).
    fn unigram<'a>(&self, s: &'a str) -> Vec<(&'a str, u32)> {
        // best[end] = (score, start, id) of the best path ending at byte `end`.
        let mut best: Vec<Option<(f32, usize, u32)>> = vec![None; s.len() + 1];
        best[0] = Some((0.0, 0, self.unk_id));
        let unk_score = self.min_score - UNK_PENALTY;
        let mut start = 0;
        while start < s.len() {
            let here = best[start].map_or(0.0, |b| b.0);
            let char_len = s[start..].chars().next().map_or(1, char::len_utf8);
            let mut single = false;
            let limit = (start + self.max_len).min(s.len());
            for end in (start + 1..=limit).filter(|&e| s.is_char_boundary(e)) {
                let Some(&id) = self.pieces.get(&s[start..end]) else { continue };
                let score = match self.kind(id) {
                    PieceType::Unused => continue,
                    PieceType::UserDefined => (end - start) as f32 * self.max_score - 0.1,
                    _ => self.model.pieces[id as usize].score,
                };
                relax(&mut best[end], here + score, start, id);
                single |= end - start == char_len;
            }
            if !single {
                relax(&mut best[start + char_len], here + unk_score, start, self.unk_id);
            }
            start += char_len;
        }
        let mut out = Vec::new();
        let mut end = s.len();
        while end > 0 {
            let Some((_, start, id)) = best[end] else { break };
            out.push((&s[start..end], id));
            end = start;
        }
        out.reverse();
        out
    }

    /// BPE: characters merged pair by pair, the best-scoring pair first (leftmost on ties).
    fn bpe<'a>(&self, s: &'a str) -> Vec<(&'a str, u32)> {
        // Symbols as byte ranges, linked; a merged-away symbol is empty.
        let mut sym: Vec<(usize, usize)> = s.char_indices().map(|(i, c)| (i, i + c.len_utf8())).collect();
        let n = sym.len();
        let (mut prev, mut next): (Vec<isize>, Vec<isize>) = (
            (0..n as isize).map(|i| i - 1).collect(),
            (0..n as isize).map(|i| if i + 1 < n as isize { i + 1 } else { -1 }).collect(),
        );
        let mut agenda = std::collections::BinaryHeap::new();
        let pair = |sym: &[(usize, usize)], l: usize, r: usize| -> Option<Pair> {
            let text = &s[sym[l].0..sym[r].1];
            let &id = self.pieces.get(text)?;
            Some(Pair { score: self.model.pieces[id as usize].score, left: l, right: r, len: text.len() })
        };
        for i in 1..n {
            agenda.extend(pair(&sym, i - 1, i));
        }
        while let Some(top) = agenda.pop() {
            let (l, r) = (top.left, top.right);
            let (ls, rs) = (sym[l], sym[r]);
            if ls.0 == ls.1 || rs.0 == rs.1 || (ls.1 - ls.0) + (rs.1 - rs.0) != top.len || ls.1 != rs.0 {
                continue;
            }
            sym[l] = (ls.0, rs.1);
            sym[r] = (rs.1, rs.1);
            next[l] = next[r];
            if next[r] >= 0 {
                prev[next[r] as usize] = l as isize;
            }
            if prev[l] >= 0 {
                agenda.extend(pair(&sym, prev[l] as usize, l));
            }
            if next[l] >= 0 {
                agenda.extend(pair(&sym, l, next[l] as usize));
            }
        }
        let mut out = Vec::new();
        let mut i = if n > 0 { 0isize } else { -1 };
        while i >= 0 {
            let (a, b) = sym[i as usize];
            let piece = &s[a..b];
            self.resegment(piece, &mut out);
            i = next[i as usize];
        }
        out
    }

    /// A BPE symbol's ids: unused pieces are split back into the pieces they were merged from.
    fn resegment<'a>(&self, piece: &'a str, out: &mut Vec<(&'a str, u32)>) {
        let id = self.piece_to_id(piece);
        if self.kind(id) != PieceType::Unused {
            out.push((piece, id));
            return;
        }
        // The split whose halves are both pieces, as the merge that made it.
        let split = (1..piece.len())
            .filter(|&k| piece.is_char_boundary(k))
            .find(|&k| self.pieces.contains_key(&piece[..k]) && self.pieces.contains_key(&piece[k..]));
        match split {
            Some(k) => {
                self.resegment(&piece[..k], out);
                self.resegment(&piece[k..], out);
            }
            None => out.push((piece, id)),
        }
    }

    /// The text of `ids` (control pieces dropped, unknown ones as the unknown surface " ⁇ ").
    pub fn decode(&self, ids: &[u32]) -> String {
        let pieces: Vec<(&str, u32)> = ids.iter().filter_map(|&id| self.id_to_piece(id).map(|p| (p, id))).collect();
        self.decode_with_ids(&pieces)
    }

    /// The text of `pieces` (a piece not in this model decodes as itself, as Marian's target
    /// pieces from the other language's model do).
    pub fn decode_pieces(&self, pieces: &[&str]) -> String {
        let with_ids: Vec<(&str, u32)> = pieces.iter().map(|&p| (p, self.piece_to_id(p))).collect();
        self.decode_with_ids(&with_ids)
    }

    fn decode_with_ids(&self, pieces: &[(&str, u32)]) -> String {
        let mut out: Vec<u8> = Vec::new();
        let mut at_start = true;
        for &(piece, id) in pieces {
            let surface: std::borrow::Cow<str> = match self.kind(id) {
                PieceType::Control => "".into(),
                PieceType::Unknown if self.id_to_piece(id) == Some(piece) => self.model.unk_surface.as_str().into(),
                PieceType::Unknown => piece.into(),
                PieceType::Byte => {
                    if let Some(b) = byte_piece(piece) {
                        out.push(b);
                        at_start = false;
                    }
                    continue;
                }
                _ => {
                    let p = match at_start && !self.model.treat_whitespace_as_suffix {
                        true => piece.strip_prefix(SPACE).unwrap_or(piece),
                        false => piece,
                    };
                    p.replace(SPACE, " ").into()
                }
            };
            if !surface.is_empty() {
                at_start = false;
            }
            out.extend_from_slice(surface.as_bytes());
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The byte of a byte-fallback piece `<0xAB>`.
fn byte_piece(piece: &str) -> Option<u8> {
    u8::from_str_radix(piece.strip_prefix("<0x")?.strip_suffix('>')?, 16).ok()
}

/// Keeps the better of `slot` and (score, start, id); the first found wins ties.
fn relax(slot: &mut Option<(f32, usize, u32)>, score: f32, start: usize, id: u32) {
    if slot.is_none_or(|(s, _, _)| score > s) {
        *slot = Some((score, start, id));
    }
}

/// A candidate BPE merge: the higher score first, then the leftmost.
#[derive(Debug, PartialEq)]
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Eq for Pair {}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
