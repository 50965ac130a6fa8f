//! A translator for applications: a Transformer checkpoint (config, tokenizer, weights) that
//! turns lists of sentences into translations, batching them on the GPU.
//!
//! ```no_run
//! # fn main() -> wgformer::Result<()> {
//! use wgformer::models::translator::Translator;
//! use wgformer::models::transformer_decode::Search;
//! let gpu = wgformer::Gpu::new()?;
//! let translator = Translator::load(std::path::Path::new("runs/translate"))?;
//! let out = translator.translate(&gpu, &["Guten Morgen.", "Das ist ein Haus."], Search::PAPER)?;
//! for line in &out.lines {
//!     println!("{line}");
//! }
//! # Ok(())
//! # }
//! ```

use super::transformer::TransformerConfig;
use super::transformer_checkpoint as ckpt;
use super::transformer_decode::{Decoder, Search};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::text::bpe::{Bpe, UNK};
use std::path::Path;

/// Tokens a source or translation may have, end of sentence included: the longest training
/// length (`train translate` pads to at most 128).
pub const MAX_TOKENS: usize = 128;

/// The decoder's source lengths: the shortest that holds a call's longest source is used, so
/// short sentences do not pay for the longest possible one.
const SOURCE_LENGTHS: [usize; 4] = [16, 32, 64, MAX_TOKENS];

/// Sentences decoded at once with greedy search; beam search decodes `MAX_ROWS / beam`.
pub const MAX_ROWS: usize = 128;

/// A Transformer ready to translate.
pub struct Translator {
    /// The model's sizes (config.json).
    pub config: TransformerConfig,
    /// The shared German-English BPE vocabulary the model was trained with (tokenizer.json).
    pub tokenizer: Bpe,
    params: Vec<(String, Vec<f32>)>,
}

/// Translations of a list of sentences, in order, and what was adjusted on the way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Translations {
    /// One per source; an empty source gives an empty translation.
    pub lines: Vec<String>,
    /// Characters the tokenizer never saw, read as `<unk>`.
    pub unknown_chars: usize,
    /// Sources (by index) over [`MAX_TOKENS`] - 1 tokens, of which only the start was read.
    pub truncated: Vec<usize>,
}

impl Translator {
    /// Reads a checkpoint directory written by `wgformer train translate` (config.json,
    /// tokenizer.json, model.safetensors).
    pub fn load(dir: &Path) -> Result<Self> {
        let ck = ckpt::load(dir)?;
        Ok(Self::new(ck.config, ck.tokenizer, ck.params))
    }

    /// [`Translator::load`] from a checkpoint's files (name, bytes) held in memory (a
    /// browser's upload); `place` names them in errors.
    pub fn from_files(files: &[(String, Vec<u8>)], place: &str) -> Result<Self> {
        let ck = super::transformer_checkpoint::from_files(files, place)?;
        Ok(Self::new(ck.config, ck.tokenizer, ck.params))
    }

    /// A translator from parameters already in memory (under their checkpoint names).
    pub fn new(config: TransformerConfig, tokenizer: Bpe, params: Vec<(String, Vec<f32>)>) -> Self {
        Translator { config, tokenizer, params }
    }

    /// Checks a search: 1 to [`MAX_ROWS`] hypotheses, a finite length penalty of at least 0.
    pub fn check_search(search: &Search) -> Result<()> {
        if search.beam == 0 || search.beam > MAX_ROWS {
            return Err(Error::Config(format!("beam {}: keep between 1 and {MAX_ROWS} hypotheses", search.beam)));
        }
        if !(search.alpha.is_finite() && search.alpha >= 0.0) {
            return Err(Error::Config(format!(
                "alpha {}: the length penalty exponent must be at least 0",
                search.alpha
            )));
        }
        Ok(())
    }

    /// Translates `sources`, up to [`MAX_ROWS`] / beam at a time on `gpu`.
    pub fn translate(&self, gpu: &Gpu, sources: &[&str], search: Search) -> Result<Translations> {
        pollster::block_on(self.translate_async(gpu, sources, search))
    }

    /// [`Translator::translate`] without blocking (browsers).
    pub async fn translate_async(&self, gpu: &Gpu, sources: &[&str], search: Search) -> Result<Translations> {
        Self::check_search(&search)?;
        let mut out = Translations { lines: vec![String::new(); sources.len()], ..Default::default() };
        let ids: Vec<Vec<u32>> = sources
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut ids = self.tokenizer.encode(line);
                out.unknown_chars += ids.iter().filter(|&&t| t == UNK).count();
                if ids.len() > MAX_TOKENS - 1 {
                    out.truncated.push(i);
                    ids.truncate(MAX_TOKENS - 1);
                }
                ids
            })
            .collect();
        let mut todo: Vec<usize> = (0..sources.len()).filter(|&i| !ids[i].is_empty()).collect();
        // Sentences of similar length share a batch: a batch decodes until its longest is done.
        todo.sort_by_key(|&i| ids[i].len());
        if todo.is_empty() {
            return Ok(out);
        }
        let rows = (MAX_ROWS / search.beam).clamp(1, todo.len());
        // Each batch gets a decoder sized to its longest source: the key/value caches, and so
        // every decoding step's cost, grow with the lengths a decoder is built for.
        let mut decoder: Option<Decoder> = None;
        for chunk in todo.chunks(rows) {
            let longest = chunk.iter().map(|&i| ids[i].len() + 1).max().unwrap_or(1);
            let src_max = SOURCE_LENGTHS.into_iter().find(|&l| l >= longest).unwrap_or(MAX_TOKENS);
            // A translation may run to twice its source's length (and 10 tokens), within the
            // model's limit.
            let tgt_max = (2 * longest + 10).next_multiple_of(16).min(MAX_TOKENS);
            decoder = match decoder {
                Some(d) if d.src_max() == src_max && d.tgt_max() == tgt_max => Some(d),
                // Later sizes share the first decoder's weights.
                Some(d) => Some(Decoder::sharing(gpu, &d, rows, search, src_max, tgt_max)?),
                None => Some(Decoder::new(gpu, &self.config, &self.params, rows, search, src_max, tgt_max)?),
            };
            let Some(decoder) = decoder.as_ref() else { continue };
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            for (&i, translated) in chunk.iter().zip(decoder.decode_async(gpu, &batch).await?) {
                out.lines[i] = self.tokenizer.decode(&translated);
            }
        }
        Ok(out)
    }
}
