//! Byte-pair encoding (Sennrich et al., 2016) learned from training text: one vocabulary shared
//! by both languages, as in the paper. Text is split at whitespace and between letters/digits
//! and punctuation; a piece that starts a word carries the marker '▁', so decoding is joining
//! the pieces and turning markers into spaces. Characters seen fewer than `min_char_count`
//! times in training map to `<unk>`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The word-start marker.
pub const WORD_START: char = '▁';
/// Special tokens, in id order.
pub const SPECIALS: [&str; 4] = ["<pad>", "<s>", "</s>", "<unk>"];
pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
pub const UNK: u32 = 3;

/// A learned tokenizer: the vocabulary (id -> piece) and the merges in the order learned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bpe {
    pub vocab: Vec<String>,
    pub merges: Vec<(u32, u32)>,
    #[serde(skip)]
    index: HashMap<String, u32>,
    #[serde(skip)]
    ranks: HashMap<(u32, u32), (usize, u32)>,
}

/// Splits text into pieces: each whitespace-separated word into runs of alphanumerics and
/// single other characters, the first of each word prefixed with the marker.
pub fn pretokenize(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    for word in text.split_whitespace() {
        let mut current = String::new();
        let mut first = true;
        let flush = |current: &mut String, first: &mut bool, pieces: &mut Vec<String>| {
            if !current.is_empty() {
                let mark = if *first { WORD_START.to_string() } else { String::new() };
                pieces.push(mark + current);
                current.clear();
                *first = false;
            }
        };
        for ch in word.chars() {
            if ch.is_alphanumeric() {
                current.push(ch);
            } else {
                flush(&mut current, &mut first, &mut pieces);
                current.push(ch);
                flush(&mut current, &mut first, &mut pieces);
            }
        }
        flush(&mut current, &mut first, &mut pieces);
    }
    pieces
}

impl Bpe {
    /// Learns a vocabulary of at most `vocab_size` entries from `texts`.
    pub fn learn<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        vocab_size: usize,
        min_char_count: usize,
    ) -> Result<Self> {
        let mut words: HashMap<String, i64> = HashMap::new();
        for text in texts {
            for p in pretokenize(text) {
                *words.entry(p).or_default() += 1;
            }
        }
        let mut chars: HashMap<char, i64> = HashMap::new();
        for (w, n) in &words {
            for c in w.chars() {
                *chars.entry(c).or_default() += n;
            }
        }
        let mut alphabet: Vec<char> =
            chars.iter().filter(|(_, &n)| n >= min_char_count as i64).map(|(&c, _)| c).collect();
        alphabet.sort_unstable();
        let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        vocab.extend(alphabet.iter().map(|c| c.to_string()));
        if vocab.len() > vocab_size {
            return Err(Error::Config(format!(
                "a vocabulary of {vocab_size} cannot hold the {} characters of the training text",
                vocab.len()
            )));
        }
        let mut bpe = Bpe { vocab, merges: Vec::new(), index: HashMap::new(), ranks: HashMap::new() };
        bpe.reindex();
        // Words as symbol sequences (unknown characters split words: they are never merged).
        let mut seqs: Vec<(Vec<u32>, i64)> = words.iter().map(|(w, &n)| (bpe.chars_to_ids(w), n)).collect();
        seqs.sort();
        let mut pairs: HashMap<(u32, u32), i64> = HashMap::new();
        let mut where_: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
        for (i, (s, n)) in seqs.iter().enumerate() {
            for p in s.windows(2).filter(|p| p[0] != UNK && p[1] != UNK) {
                *pairs.entry((p[0], p[1])).or_default() += n;
                where_.entry((p[0], p[1])).or_default().push(i);
            }
        }
        while bpe.vocab.len() < vocab_size {
            // Most frequent pair; ties go to the smaller ids so learning is deterministic.
            let best = pairs.iter().filter(|(_, &n)| n > 0).max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
            let Some((&pair, &count)) = best else { break };
            if count < 2 {
                break;
            }
            let id = bpe.vocab.len() as u32;
            bpe.vocab.push(format!("{}{}", bpe.vocab[pair.0 as usize], bpe.vocab[pair.1 as usize]));
            bpe.merges.push(pair);
            let mut touched = where_.remove(&pair).unwrap_or_default();
            touched.dedup();
            for i in touched {
                let (seq, n) = &mut seqs[i];
                if !seq.windows(2).any(|p| (p[0], p[1]) == pair) {
                    continue;
                }
                for p in seq.windows(2).filter(|p| p[0] != UNK && p[1] != UNK) {
                    *pairs.entry((p[0], p[1])).or_default() -= *n;
                }
                *seq = merge_pair(seq, pair, id);
                for p in seq.windows(2).filter(|p| p[0] != UNK && p[1] != UNK) {
                    *pairs.entry((p[0], p[1])).or_default() += *n;
                    where_.entry((p[0], p[1])).or_default().push(i);
                }
            }
            pairs.remove(&pair);
        }
        bpe.reindex();
        Ok(bpe)
    }

    fn reindex(&mut self) {
        self.index = self.vocab.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        // Merged pieces follow the specials and the characters, in the order learned.
        let first = self.vocab.len().saturating_sub(self.merges.len());
        self.ranks = self.merges.iter().enumerate().map(|(r, &p)| (p, (r, (first + r) as u32))).collect();
    }

    fn chars_to_ids(&self, piece: &str) -> Vec<u32> {
        piece.chars().map(|c| self.index.get(c.encode_utf8(&mut [0; 4]) as &str).copied().unwrap_or(UNK)).collect()
    }

    /// Number of entries (specials, characters and merges).
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// True for a tokenizer with no vocabulary.
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// Token ids of `text` (no bos/eos). Unknown characters become `<unk>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for piece in pretokenize(text) {
            out.extend(self.encode_piece(&piece));
        }
        out
    }

    fn encode_piece(&self, piece: &str) -> Vec<u32> {
        let mut seq = self.chars_to_ids(piece);
        loop {
            let best = seq.windows(2).filter_map(|p| self.ranks.get(&(p[0], p[1])).map(|&r| (r, (p[0], p[1])))).min();
            let Some(((_, id), pair)) = best else { return seq };
            seq = merge_pair(&seq, pair, id);
        }
    }

    /// The text of `ids`: pieces joined, markers turned into spaces; specials are dropped
    /// except `<unk>`, which shows as '�'.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut s = String::new();
        for &id in ids {
            match id {
                PAD | BOS | EOS => {}
                UNK => s.push('\u{FFFD}'),
                _ => s.push_str(self.vocab.get(id as usize).map_or("\u{FFFD}", |p| p.as_str())),
            }
        }
        s.replace(WORD_START, " ").trim_start().to_string()
    }

    /// The tokenizer as JSON (saved next to a checkpoint).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a tokenizer written by [`Bpe::to_json`], checking that merges and vocabulary agree.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut bpe: Bpe = serde_json::from_str(text).map_err(|e| Error::Config(format!("tokenizer: {e}")))?;
        let first = bpe.vocab.len().saturating_sub(bpe.merges.len());
        let ok = bpe.vocab.len() >= SPECIALS.len() + bpe.merges.len()
            && bpe.vocab.iter().zip(SPECIALS).all(|(a, b)| a == b)
            && bpe.merges.iter().enumerate().all(|(r, &(a, b))| {
                let (a, b) = (a as usize, b as usize);
                a < first + r && b < first + r && bpe.vocab[first + r] == format!("{}{}", bpe.vocab[a], bpe.vocab[b])
            });
        if !ok {
            return Err(Error::Config("tokenizer: the merges do not match the vocabulary".into()));
        }
        bpe.reindex();
        Ok(bpe)
    }
}

fn merge_pair(seq: &[u32], pair: (u32, u32), id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(seq.len());
    let mut i = 0;
    while i < seq.len() {
        if i + 1 < seq.len() && (seq[i], seq[i + 1]) == pair {
            out.push(id);
            i += 2;
        } else {
            out.push(seq[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: [&str; 4] =
        ["Ich habe Hunger.", "Ich habe keinen Hunger!", "Wir haben Hunger, sagt er.", "I'm hungry (very)."];

    #[test]
    fn pretokenize_marks_word_starts_and_splits_punctuation() {
        assert_eq!(pretokenize("Hallo, (Welt)!"), ["▁Hallo", ",", "▁(", "Welt", ")", "!"]);
    }

    #[test]
    fn encode_then_decode_gives_the_text_back() {
        let bpe = Bpe::learn(TEXT, 60, 1).unwrap();
        assert!(bpe.merges.len() > 5, "learned {} merges", bpe.merges.len());
        for t in TEXT {
            let ids = bpe.encode(t);
            assert!(ids.len() < t.chars().count(), "merges shorten {t:?}: {ids:?}");
            assert_eq!(bpe.decode(&ids), t);
        }
        assert_eq!(bpe.decode(&bpe.encode("  Ich   habe\tHunger. ")), "Ich habe Hunger.");
    }

    #[test]
    fn unknown_characters_become_unk_and_json_round_trips() {
        let bpe = Bpe::learn(TEXT, 60, 1).unwrap();
        let ids = bpe.encode("Ich 😀 habe");
        assert!(ids.contains(&UNK));
        assert_eq!(bpe.decode(&ids), "Ich \u{FFFD} habe");
        let back = Bpe::from_json(&bpe.to_json()).unwrap();
        assert_eq!(back.encode("Wir haben Hunger"), bpe.encode("Wir haben Hunger"));
        let mut broken = bpe.clone();
        broken.merges.swap(0, 1);
        assert!(Bpe::from_json(&broken.to_json()).is_err());
    }

    #[test]
    fn a_vocabulary_too_small_for_the_alphabet_is_an_error() {
        assert!(Bpe::learn(TEXT, 10, 1).is_err());
    }
}
