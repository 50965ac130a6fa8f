//! Translation models of either kind behind one face: wgformer's own (trained from scratch,
//! with a shared BPE vocabulary: `transformer_checkpoint`) and Hugging Face Marian (OPUS-MT)
//! directories (`marian_checkpoint`). A training run, `translate` and `eval` take either; the
//! kind is config.json's `model_type`.

use super::marian_checkpoint::{self, MarianText};
use super::marian_translator::MarianTranslator;
use super::transformer::TransformerConfig;
use super::transformer_checkpoint as ckpt;
use super::transformer_decode::Search;
use super::translator::{Translations, Translator};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::runtime::checkpoint::TrainingState;
use crate::text::bpe::Bpe;
use crate::text::corpus::{Example, Specials};
use std::path::Path;

/// How a translation model reads and writes text, and how its directory is laid out.
#[derive(Clone, Debug)]
pub enum Vocabulary {
    /// wgformer's shared BPE vocabulary (tokenizer.json).
    Bpe(Bpe),
    /// A Marian model's SentencePiece models, vocab.json and the files kept with them.
    Marian(Box<MarianText>),
}

impl Vocabulary {
    /// The ids a batch pads, starts the decoder and ends a sentence with.
    pub fn specials(&self, cfg: &TransformerConfig) -> Specials {
        match self {
            Vocabulary::Bpe(_) => Specials::BPE,
            Vocabulary::Marian(_) => Specials { pad: cfg.pad_id, start: cfg.decoder_start(), eos: cfg.eos_id },
        }
    }

    /// A training pair's ids, without the end-of-sentence id (batches add it).
    pub fn encode_pair(&self, source: &str, target: &str) -> Example {
        match self {
            Vocabulary::Bpe(bpe) => Example { src: bpe.encode(source), tgt: bpe.encode(target) },
            Vocabulary::Marian(m) => {
                let cut = |mut ids: Vec<u32>| {
                    ids.pop(); // The tokenizer's eos.
                    ids
                };
                Example { src: cut(m.tokenizer.encode(source)), tgt: cut(m.tokenizer.encode_target(target)) }
            }
        }
    }

    /// The longest sequence (eos included) the model has positions for.
    pub fn max_positions(&self) -> usize {
        match self {
            Vocabulary::Bpe(_) => usize::MAX,
            Vocabulary::Marian(m) => m.max_positions,
        }
    }

    /// Whether training updates the graph parameter `name`: Marian's `final_logits_bias` (the
    /// generator's bias here) is a buffer, never trained.
    pub fn is_trained(&self, name: &str) -> bool {
        !(matches!(self, Vocabulary::Marian(_)) && name == "generator.bias")
    }

    /// What the kind is called in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Vocabulary::Bpe(_) => "wgformer Transformer",
            Vocabulary::Marian(_) => "Marian",
        }
    }

    /// A translator of `params` (by graph name).
    pub fn translator(&self, cfg: &TransformerConfig, params: Vec<(String, Vec<f32>)>) -> TranslationModel {
        match self {
            Vocabulary::Bpe(bpe) => TranslationModel::Ours(Box::new(Translator::new(cfg.clone(), bpe.clone(), params))),
            Vocabulary::Marian(m) => TranslationModel::Marian(Box::new(MarianTranslator::new(
                cfg.clone(),
                m.tokenizer.clone(),
                m.generation,
                params,
            ))),
        }
    }

    /// Writes a model directory of this kind: `params` of `g`, with a training run's state.
    pub fn save(
        &self,
        dir: &Path,
        cfg: &TransformerConfig,
        g: &Graph,
        params: &[(TensorId, Vec<f32>)],
        training: Option<TrainingState>,
    ) -> Result<()> {
        match self {
            Vocabulary::Bpe(bpe) => ckpt::save(dir, cfg, bpe, g, params, training),
            Vocabulary::Marian(m) => marian_checkpoint::save(dir, m, cfg, g, params, training),
        }
    }

    /// The parameters of `g` from the weights file `path` written for this kind.
    pub fn read_params(&self, path: &Path, cfg: &TransformerConfig, g: &Graph) -> Result<Vec<(TensorId, Vec<f32>)>> {
        match self {
            Vocabulary::Bpe(_) => crate::runtime::checkpoint::load_params(path, g, &ckpt::same_shape),
            Vocabulary::Marian(_) => {
                let tensors = crate::util::io::read_safetensors(path)?;
                by_id(g, super::marian::params_from(&tensors, cfg, path)?, path)
            }
        }
    }
}

/// Named parameters as the tensors of `g` (`path` names their origin in errors).
pub fn by_id(g: &Graph, named: Vec<(String, Vec<f32>)>, path: &Path) -> Result<Vec<(TensorId, Vec<f32>)>> {
    named
        .into_iter()
        .map(|(name, v)| {
            g.find(&name).map(|p| (p, v)).ok_or_else(|| Error::Format {
                path: path.display().to_string(),
                msg: format!("no parameter {name} in the model"),
            })
        })
        .collect()
}

/// The config and vocabulary of the model directory `dir`, of either kind.
pub fn load_config(dir: &Path) -> Result<(TransformerConfig, Vocabulary)> {
    match model_type(dir)?.as_deref() {
        Some("marian") => {
            let (cfg, text) = marian_checkpoint::load_text(dir)?;
            Ok((cfg, Vocabulary::Marian(Box::new(text))))
        }
        _ => {
            let (cfg, bpe) = ckpt::load_config(dir)?;
            Ok((cfg, Vocabulary::Bpe(bpe)))
        }
    }
}

/// Parameter values by graph name.
pub type NamedParams = Vec<(String, Vec<f32>)>;

/// A model directory of either kind, whole: (config, vocabulary, parameters by graph name).
pub fn load(dir: &Path) -> Result<(TransformerConfig, Vocabulary, NamedParams)> {
    match model_type(dir)?.as_deref() {
        Some("marian") => {
            let m = marian_checkpoint::load(dir)?;
            Ok((m.config, Vocabulary::Marian(Box::new(m.text)), m.params))
        }
        _ => {
            let ck = ckpt::load(dir)?;
            Ok((ck.config, Vocabulary::Bpe(ck.tokenizer), ck.params))
        }
    }
}

/// config.json's model_type in `dir` (None when unreadable: the loaders then say why); a type
/// that is no translation model is an error naming it.
fn model_type(dir: &Path) -> Result<Option<String>> {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else { return Ok(None) };
    match super::model_type(&text) {
        Some(t) if t != "marian" && t != "transformer" => Err(Error::Format {
            path: dir.join("config.json").display().to_string(),
            msg: format!("model_type {t:?} is not a translation model (marian, or transformer: ours)"),
        }),
        t => Ok(t),
    }
}

/// A model ready to translate: one of ours, or a Marian model.
pub enum TranslationModel {
    Ours(Box<Translator>),
    Marian(Box<MarianTranslator>),
}

impl TranslationModel {
    /// The model in `dir`, by its config.json's model_type.
    pub fn load(dir: &Path) -> Result<Self> {
        match model_type(dir)?.as_deref() {
            Some("marian") => Ok(TranslationModel::Marian(Box::new(MarianTranslator::load(dir)?))),
            _ => Ok(TranslationModel::Ours(Box::new(Translator::load(dir)?))),
        }
    }

    /// Translations with `search` (a Marian model takes its beam from it and the rest of its
    /// generation settings, the length penalty included, from its directory).
    pub fn translate(&self, gpu: &Gpu, sources: &[&str], search: Search) -> Result<Translations> {
        match self {
            TranslationModel::Ours(t) => t.translate(gpu, sources, search),
            TranslationModel::Marian(m) => m.translate(gpu, sources, Some(search.beam)),
        }
    }
}
