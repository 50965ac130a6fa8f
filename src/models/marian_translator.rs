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

use super::marian;
use super::marian_generate::{generate, Generation};
use super::transformer::TransformerConfig;
use super::transformer_decode::{Decoder, Search};
use super::translator::Translations;
use crate::error::{Error, Result};
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
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })
        };
        let config_text = read("config.json")?;
        let config = marian::config_from_json(&config_text, &dir.join("config.json"))?;
        let (tensors, weights) = marian::read_weights(dir)?;
        let params = marian::params_from(&tensors, &config, &weights)?;
        let tokenizer = MarianTokenizer::load(dir)?;
        if tokenizer.len() > config.vocab_size {
            return Err(Error::Format {
                path: dir.join("vocab.json").display().to_string(),
                msg: format!(
                    "has ids up to {} but the model's vocabulary is {}",
                    tokenizer.len() - 1,
                    config.vocab_size
                ),
            });
        }
        let settings = read("generation_config.json").unwrap_or(config_text);
        let generation = generation_from_json(&settings, &dir.join("generation_config.json"))?;
        Ok(MarianTranslator { config, tokenizer, generation, params })
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
        for chunk in order.chunks(rows) {
            let src_max = chunk.iter().map(|&i| ids[i].len()).max().unwrap_or(1).next_multiple_of(16);
            let tgt_max = (g.max_length.saturating_sub(1)).clamp(1, MAX_TARGET);
            let search = Search { beam: g.num_beams, alpha: 0.0 };
            let decoder = Decoder::new(gpu, &self.config, &self.params, chunk.len(), search, src_max, tgt_max)?;
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let limited = Generation { max_length: tgt_max + 1, ..g };
            for (&i, tokens) in chunk.iter().zip(generate(gpu, &decoder, &batch, &limited).await?) {
                out.lines[i] = self.tokenizer.decode(&tokens, true);
            }
        }
        Ok(out)
    }
}

/// Generation settings from generation_config.json (or config.json): num_beams, max_length,
/// length_penalty; transformers' defaults where absent (1, 20, 1.0; Marian's configs set 4
/// and 512). Sampling and settings this search does not implement are errors naming them.
pub fn generation_from_json(text: &str, path: &Path) -> Result<Generation> {
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if v.get("do_sample").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err(bad("do_sample true: sampling is not supported (greedy and beam search are)".into()));
    }
    for key in ["num_beam_groups", "no_repeat_ngram_size", "repetition_penalty"] {
        let value = v.get(key).and_then(serde_json::Value::as_f64);
        let neutral = if key == "no_repeat_ngram_size" { 0.0 } else { 1.0 };
        if value.is_some_and(|x| x != neutral) {
            return Err(bad(format!("{key} {} is not supported", value.unwrap_or_default())));
        }
    }
    let int = |key: &str, default: u64| v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(default) as usize;
    Ok(Generation {
        num_beams: int("num_beams", 1).max(1),
        max_length: int("max_length", 20).max(2),
        length_penalty: v.get("length_penalty").and_then(serde_json::Value::as_f64).unwrap_or(1.0),
    })
}
