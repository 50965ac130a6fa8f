//! Marian's tokenizer (transformers' MarianTokenizer): SentencePiece pieces of the source text
//! (source.spm) looked up in vocab.json, the unknown id for a piece the vocabulary lacks, the
//! end-of-sentence id appended; special tokens typed in the text kept whole; a leading `>>xx<<`
//! language code kept as one token. Decoding maps ids back to pieces and joins them as
//! MarianTokenizer does (with the source model, as it does for shared vocabularies).
//! Punctuation is left as it is: transformers normalises it with sacremoses only where that
//! package is installed.

use super::sentencepiece::{SentencePiece, SPACE};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// A Marian model's tokenizer.
#[derive(Clone, Debug)]
pub struct MarianTokenizer {
    source: SentencePiece,
    target: SentencePiece,
    vocab: HashMap<String, u32>,
    pieces: HashMap<u32, String>,
    pub unk_id: u32,
    pub eos_id: u32,
    pub pad_id: u32,
}

const SPECIAL: [&str; 3] = ["</s>", "<unk>", "<pad>"];

impl MarianTokenizer {
    /// From the bytes of source.spm and target.spm and the text of vocab.json; `place` names
    /// the directory in errors.
    pub fn from_parts(source: &[u8], target: &[u8], vocab_json: &str, place: &str) -> Result<Self> {
        let file = |name: &str| format!("{place}/{name}");
        let source = SentencePiece::from_bytes(source, &file("source.spm"))?;
        let target = SentencePiece::from_bytes(target, &file("target.spm"))?;
        let vocab: HashMap<String, u32> = serde_json::from_str(vocab_json)
            .map_err(|e| Error::Format { path: file("vocab.json"), msg: format!("not a piece -> id map: {e}") })?;
        let id = |token: &str| {
            vocab.get(token).copied().ok_or_else(|| Error::Format {
                path: file("vocab.json"),
                msg: format!("has no {token} (every Marian vocabulary has </s>, <unk> and <pad>)"),
            })
        };
        let (unk_id, eos_id, pad_id) = (id("<unk>")?, id("</s>")?, id("<pad>")?);
        let pieces = vocab.iter().map(|(p, &i)| (i, p.clone())).collect();
        Ok(MarianTokenizer { source, target, vocab, pieces, unk_id, eos_id, pad_id })
    }

    /// source.spm, target.spm and vocab.json of a Marian directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })
        };
        let vocab = String::from_utf8_lossy(&read("vocab.json")?).into_owned();
        Self::from_parts(&read("source.spm")?, &read("target.spm")?, &vocab, &dir.display().to_string())
    }

    /// Ids in the vocabulary (the largest id + 1).
    pub fn len(&self) -> usize {
        self.pieces.keys().max().map_or(0, |&m| m as usize + 1)
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The id of `token` (the unknown id when the vocabulary lacks it).
    fn id(&self, token: &str) -> u32 {
        self.vocab.get(token).copied().unwrap_or(self.unk_id)
    }

    /// The model's input ids for a source sentence, eos last.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_with(&self.source, text)
    }

    /// The ids of a target sentence (labels for training), eos last.
    pub fn encode_target(&self, text: &str) -> Vec<u32> {
        self.encode_with(&self.target, text)
    }

    fn encode_with(&self, spm: &SentencePiece, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        loop {
            let next = SPECIAL.iter().filter_map(|s| rest.find(s).map(|at| (at, *s))).min();
            let chunk = next.map_or(rest, |(at, _)| &rest[..at]);
            self.chunk_ids(spm, chunk, &mut ids);
            let Some((at, special)) = next else { break };
            ids.push(self.id(special));
            rest = &rest[at + special.len()..];
        }
        ids.push(self.eos_id);
        ids
    }

    /// The ids of text between special tokens: a leading language code, then its pieces.
    fn chunk_ids(&self, spm: &SentencePiece, mut chunk: &str, ids: &mut Vec<u32>) {
        if let Some(end) = chunk.strip_prefix(">>").and_then(|r| r.find("<<")) {
            ids.push(self.id(&chunk[..end + 4]));
            chunk = &chunk[end + 4..];
        }
        ids.extend(spm.encode_pieces(chunk).iter().map(|(piece, _)| self.id(piece)));
    }

    /// The text of generated ids; with `skip_special`, end-of-sentence, padding and unknown
    /// tokens are left out.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let special = [self.eos_id, self.unk_id, self.pad_id];
        let tokens: Vec<String> = ids
            .iter()
            .filter(|id| !(skip_special && special.contains(id)))
            .map(|&id| match self.pieces.get(&id) {
                Some(p) => p.clone(),
                None => self.source.id_to_piece(id).map_or("<unk>".to_string(), str::to_string),
            })
            .collect();
        let mut out = String::new();
        let mut run: Vec<&str> = Vec::new();
        for token in &tokens {
            if SPECIAL.contains(&token.as_str()) {
                out += &self.source.decode_pieces(&run);
                out += token;
                out.push(' ');
                run.clear();
            } else {
                run.push(token);
            }
        }
        out += &self.source.decode_pieces(&run);
        out.replace(SPACE, " ").trim().to_string()
    }
}
