//! Marian directories as a whole: read (config, tokenizer, generation settings, weights) and
//! written back in the layout transformers' `save_pretrained` gives them, so that a model
//! fine-tuned here loads in transformers and in `wgformer translate` alike. The files this
//! engine does not change (config.json, the tokenizer's, generation_config.json) are copied
//! byte for byte.

use super::marian::{self, hf_names};
use super::marian_generate::{generation_from_json, Generation};
use super::transformer::TransformerConfig;
use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::runtime::checkpoint::TrainingState;
use crate::text::marian::MarianTokenizer;
use std::path::Path;

/// The files of a Marian directory a fine-tuned copy keeps as they are (those present).
pub const KEPT_FILES: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "source.spm",
    "target.spm",
    "vocab.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Everything of a Marian directory but its weights.
#[derive(Clone, Debug)]
pub struct MarianText {
    pub tokenizer: MarianTokenizer,
    /// generation_config.json's settings (or config.json's, or transformers' defaults).
    pub generation: Generation,
    /// The longest sequence its positional table covers (`max_position_embeddings`).
    pub max_positions: usize,
    /// [`KEPT_FILES`] present in the directory: (name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
}

/// A Marian directory read whole.
pub struct MarianModel {
    pub config: TransformerConfig,
    pub text: MarianText,
    /// The graph's parameters by name (q, k and v packed).
    pub params: Vec<(String, Vec<f32>)>,
}

/// The config and everything else but the weights of the Marian directory `dir`.
pub fn load_text(dir: &Path) -> Result<(TransformerConfig, MarianText)> {
    let mut files = Vec::new();
    let required = |name: &str| matches!(name, "config.json" | "source.spm" | "target.spm" | "vocab.json");
    for name in KEPT_FILES {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => files.push((name.to_string(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required(name) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Format {
                    path: path.display().to_string(),
                    msg: "missing: a Marian directory has config.json, source.spm, target.spm and vocab.json".into(),
                })
            }
            Err(source) => return Err(Error::Io { path: path.display().to_string(), source }),
        }
    }
    let text = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| String::from_utf8_lossy(b).into_owned());
    let config_text = text("config.json").unwrap_or_default();
    let config = marian::config_from_json(&config_text, &dir.join("config.json"))?;
    let bytes = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice()).unwrap_or_default();
    let place = dir.display().to_string();
    let tokenizer = MarianTokenizer::from_parts(
        bytes("source.spm"),
        bytes("target.spm"),
        &text("vocab.json").unwrap_or_default(),
        &place,
    )?;
    if tokenizer.len() > config.vocab_size {
        return Err(Error::Format {
            path: dir.join("vocab.json").display().to_string(),
            msg: format!("has ids up to {} but the model's vocabulary is {}", tokenizer.len() - 1, config.vocab_size),
        });
    }
    let (settings, from) = match text("generation_config.json") {
        Some(t) => (t, dir.join("generation_config.json")),
        None => (config_text.clone(), dir.join("config.json")),
    };
    let generation = generation_from_json(&settings, &from)?;
    let max_positions = serde_json::from_str::<serde_json::Value>(&config_text)
        .ok()
        .and_then(|v| v.get("max_position_embeddings")?.as_u64())
        .map_or(512, |n| n.clamp(1, 1 << 20) as usize);
    Ok((config, MarianText { tokenizer, generation, max_positions, files }))
}

/// Reads a Marian directory: its config, tokenizer, generation settings and weights
/// (model.safetensors, else pytorch_model.bin).
pub fn load(dir: &Path) -> Result<MarianModel> {
    let (config, text) = load_text(dir)?;
    let (tensors, path) = marian::read_weights(dir)?;
    let params = marian::params_from(&tensors, &config, &path)?;
    Ok(MarianModel { config, text, params })
}

/// A kept file's bytes; config.json with its `dropout` replaced when it differs from `dropout`
/// (keys sorted and indented by two, as transformers writes them).
fn with_dropout(name: &str, bytes: &[u8], dropout: f32) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return bytes.to_vec() };
    let same = v.get("dropout").and_then(serde_json::Value::as_f64).is_some_and(|d| d as f32 == dropout);
    if name != "config.json" || same {
        return bytes.to_vec();
    }
    // The shortest decimal of the f32 (0.3, not 0.30000001192092896).
    v["dropout"] = serde_json::json!(dropout.to_string().parse::<f64>().unwrap_or(dropout as f64));
    serde_json::to_string_pretty(&v).map_or_else(|_| bytes.to_vec(), |t| (t + "\n").into_bytes())
}

/// model.safetensors' bytes as `save_pretrained` writes a Marian model: the shared table once
/// (as `model.shared.weight`), q, k and v apart, `final_logits_bias` of shape (1, vocab), and
/// the "pt" format mark transformers looks for.
pub fn weights_bytes(g: &Graph, params: &[(TensorId, Vec<f32>)]) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (p, values) in params {
        let d = g.desc(*p);
        if d.name == "generator.bias" {
            tensors.push(("final_logits_bias".into(), vec![1, d.len()], values));
            continue;
        }
        let names = hf_names(&d.name, &d.shape);
        if names.is_empty() {
            return Err(Error::Config(format!("{} has no Marian name", d.name)));
        }
        let row = d.shape.iter().skip(1).product::<usize>();
        for (name, shape, rows) in names {
            tensors.push((name, shape, &values[rows.start * row..rows.end * row]));
        }
    }
    let meta = [("format".to_string(), "pt".to_string())].into_iter().collect();
    crate::util::io::safetensors_bytes_with(&tensors, Some(meta))
}

/// Writes a Marian directory: `text`'s files as they came (config.json's dropout set to
/// `cfg`'s where a run changed it), the weights in transformers' layout and, for a training run,
/// the optimizer state and the run's files. Written atomically.
pub fn save(
    dir: &Path,
    text: &MarianText,
    cfg: &TransformerConfig,
    g: &Graph,
    params: &[(TensorId, Vec<f32>)],
    training: Option<TrainingState>,
) -> Result<()> {
    let mut files: Vec<(&str, Vec<u8>)> =
        text.files.iter().map(|(n, b)| (n.as_str(), with_dropout(n, b, cfg.dropout))).collect();
    files.push(("model.safetensors", weights_bytes(g, params)?));
    let mut keep = Vec::new();
    if let Some(t) = training {
        keep = t.keep;
        let same = |_: &str, s: &[usize]| s.to_vec();
        files.push(("optimizer.safetensors", crate::runtime::checkpoint::moments_bytes(g, t.moments, &same)?));
        files.push(("trainer_state.json", t.state_json.into_bytes()));
        files.extend(t.extra);
    }
    crate::util::io::write_dir_atomic_keeping(dir, &files, &keep)
}
