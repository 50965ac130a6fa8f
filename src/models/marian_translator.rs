//! A published Marian (OPUS-MT) model ready to translate: a Hugging Face Marian directory
//! (config.json, model.safetensors, source.spm, target.spm, vocab.json and, where present,
//! generation_config.json) decoded as transformers' `generate` does.
//!
//! ```no_run
//! # fn main() -> wgformer::Result<()> {
//! use wgformer::models::marian_translator::MarianTranslator;
//! let gpu = wgformer::Gpu::new()?;
//! let translator = MarianTranslator::load(std::path::Path::new("opus-mt-de-en"))?;
//! let out = translator.translate(&gpu, &["Guten Morgen.", "Das ist ein Haus."], None)?;
//! println!("{}", out.lines.join("\n"));
//! # Ok(())
//! # }
//! ```

pub use super::marian_generate::generation_from_json;
use super::marian_generate::{generate, Generation};
use super::transformer::TransformerConfig;
use super::transformer_decode::{Decoder, Search};
use super::translator::Translations;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::text::marian::MarianTokenizer;
use std::path::Path;

/// The longest source (eos included) a Marian model reads: more is cut, with a note.
pub const MAX_SOURCE: usize = 512;

/// The longest translation decoded (the key/value caches' length): transformers' default
/// `max_length` of 512 would need caches past lavapipe's 128 MiB bindings at OPUS-MT's width
/// for a full batch, and a translation runs that long only when it has gone wrong.
pub const MAX_TARGET: usize = 256;

/// Hypotheses (sentences x beam) decoded at once.
const MAX_ROWS: usize = 64;

/// A Marian model with its tokenizer and generation settings.
pub struct MarianTranslator {
    pub config: TransformerConfig,
    pub tokenizer: MarianTokenizer,
    /// generation_config.json's settings (or config.json's, or transformers' defaults).
    pub generation: Generation,
    params: Vec<(String, Vec<f32>)>,
}

impl MarianTranslator {
    /// Reads a Hugging Face Marian directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let m = super::marian_checkpoint::load(dir)?;
        Ok(Self::new(m.config, m.text.tokenizer, m.text.generation, m.params))
    }

    /// A translator of parameters already in memory (a run's, between rounds).
    pub fn new(
        config: TransformerConfig,
        tokenizer: MarianTokenizer,
        generation: Generation,
        params: Vec<(String, Vec<f32>)>,
    ) -> Self {
        MarianTranslator { config, tokenizer, generation, params }
    }

    /// Translates `sources` with the model's generation settings, or with `beams` hypotheses
    /// (1: greedy) when given.
    pub fn translate(&self, gpu: &Gpu, sources: &[&str], beams: Option<usize>) -> Result<Translations> {
        pollster::block_on(self.translate_async(gpu, sources, beams))
    }

    /// [`MarianTranslator::translate`] without blocking (browsers).
    pub async fn translate_async(&self, gpu: &Gpu, sources: &[&str], beams: Option<usize>) -> Result<Translations> {
        let mut g = self.generation;
        g.num_beams = beams.unwrap_or(g.num_beams).clamp(1, MAX_ROWS);
        let mut out = Translations { lines: vec![String::new(); sources.len()], ..Default::default() };
        let ids: Vec<Vec<u32>> = sources
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut ids = self.tokenizer.encode(line);
                out.unknown_chars += ids.iter().filter(|&&t| t == self.tokenizer.unk_id).count();
                if ids.len() > MAX_SOURCE {
                    out.truncated.push(i);
                    ids.truncate(MAX_SOURCE - 1);
                    ids.push(self.tokenizer.eos_id);
                }
                ids
            })
            .collect();
        // Similar lengths share a batch; each batch's decoder is sized to its longest source.
        let mut order: Vec<usize> = (0..sources.len()).filter(|&i| !sources[i].trim().is_empty()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let rows = (MAX_ROWS / g.num_beams).max(1);
        let mut first: Option<Decoder> = None;
        for chunk in order.chunks(rows) {
            let src_max = chunk.iter().map(|&i| ids[i].len()).max().unwrap_or(1).next_multiple_of(16);
            let tgt_max = (g.max_length.saturating_sub(1)).clamp(1, MAX_TARGET);
            let search = Search { beam: g.num_beams, alpha: 0.0 };
            // Batches after the first share its weights (no upload of the model each).
            let decoder = match &first {
                Some(d) => Decoder::sharing(gpu, d, chunk.len(), search, src_max, tgt_max)?,
                None => Decoder::new(gpu, &self.config, &self.params, chunk.len(), search, src_max, tgt_max)?,
            };
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let limited = Generation { max_length: tgt_max + 1, ..g };
            for (&i, tokens) in chunk.iter().zip(generate(gpu, &decoder, &batch, &limited).await?) {
                out.lines[i] = self.tokenizer.decode(&tokens, true);
            }
            first.get_or_insert(decoder);
        }
        Ok(out)
    }
}
