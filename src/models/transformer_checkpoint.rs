//! Translation checkpoint directories: config.json (model_type "transformer"),
//! model.safetensors under nn.Transformer's state_dict names, and tokenizer.json (the BPE
//! vocabulary the model was trained with); training adds optimizer.safetensors and
//! trainer_state.json. Written atomically as a whole directory.

use super::transformer::TransformerConfig;
use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::runtime::checkpoint::TrainingState;
use crate::text::bpe::Bpe;
use crate::util::io::write_dir_atomic_keeping;
use std::path::Path;

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// Transformer parameters are stored with their graph shapes.
pub fn same_shape(_: &str, s: &[usize]) -> Vec<usize> {
    s.to_vec()
}

/// A loaded model: its configuration, tokenizer and parameters by name.
pub struct Checkpoint {
    pub config: TransformerConfig,
    pub tokenizer: Bpe,
    pub params: Vec<(String, Vec<f32>)>,
}

/// Reads config.json and tokenizer.json, checking that they agree.
pub fn load_config(dir: &Path) -> Result<(TransformerConfig, Bpe)> {
    parse_config(&read_text(&dir.join("config.json"))?, &read_text(&dir.join("tokenizer.json"))?, dir)
}

/// config.json's and tokenizer.json's texts (of the checkpoint at `dir`, for errors), checked
/// to agree.
pub fn parse_config(text: &str, tokenizer: &str, dir: &Path) -> Result<(TransformerConfig, Bpe)> {
    let path = dir.join("config.json");
    let format = |path: &Path, msg: String| Error::Format { path: path.display().to_string(), msg };
    let model_type = super::model_type(text);
    if model_type.as_deref() != Some("transformer") {
        return Err(format(&path, format!("model_type is {model_type:?}, not \"transformer\"")));
    }
    let cfg = TransformerConfig::from_json(text).map_err(|e| format(&path, e.to_string()))?;
    let tok_path = dir.join("tokenizer.json");
    let bpe = Bpe::from_json(tokenizer).map_err(|e| format(&tok_path, e.to_string()))?;
    if bpe.len() != cfg.vocab_size {
        return Err(format(
            &tok_path,
            format!("the tokenizer has {} entries but the model's vocabulary is {}", bpe.len(), cfg.vocab_size),
        ));
    }
    Ok((cfg, bpe))
}

/// Reads a whole checkpoint for inference.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let (config, tokenizer) = load_config(dir)?;
    let path = dir.join("model.safetensors");
    let reference = super::transformer::build(&config, 1, 1, 1, false)?;
    let by_id = crate::runtime::checkpoint::load_params(&path, &reference.graph, &same_shape)?;
    let params = by_id.into_iter().map(|(p, v)| (reference.graph.desc(p).name.clone(), v)).collect();
    Ok(Checkpoint { config, tokenizer, params })
}

/// [`load`] from a checkpoint's files (name, bytes) held in memory; `place` names them in
/// errors.
pub fn from_files(files: &[(String, Vec<u8>)], place: &str) -> Result<Checkpoint> {
    let file = |name: &str| {
        files.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice()).ok_or_else(|| Error::Format {
            path: format!("{place}/{name}"),
            msg: "missing: not a translation checkpoint".into(),
        })
    };
    let text = |name: &str| file(name).map(|b| String::from_utf8_lossy(b).into_owned());
    let dir = Path::new(place);
    let config = text("config.json")?;
    let model_type = super::model_type(&config);
    if model_type.as_deref() != Some("transformer") {
        let msg = format!("model_type is {model_type:?}, not \"transformer\"");
        return Err(Error::Format { path: format!("{place}/config.json"), msg });
    }
    let (config, tokenizer) = parse_config(&config, &text("tokenizer.json")?, dir)?;
    let path = dir.join("model.safetensors");
    let reference = super::transformer::build(&config, 1, 1, 1, false)?;
    let tensors = crate::util::io::parse_safetensors(file("model.safetensors")?, &path)?;
    let by_id = crate::runtime::checkpoint::params_from(tensors, &path, &reference.graph, &same_shape)?;
    let params = by_id.into_iter().map(|(p, v)| (reference.graph.desc(p).name.clone(), v)).collect();
    Ok(Checkpoint { config, tokenizer, params })
}

/// Writes a checkpoint directory.
pub fn save(
    dir: &Path,
    cfg: &TransformerConfig,
    bpe: &Bpe,
    g: &Graph,
    params: &[(TensorId, Vec<f32>)],
    training: Option<TrainingState>,
) -> Result<()> {
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("config.json", cfg.to_json().into_bytes()),
        ("tokenizer.json", bpe.to_json().into_bytes()),
        ("model.safetensors", crate::runtime::checkpoint::params_bytes(g, params, &same_shape)?),
    ];
    let mut keep = Vec::new();
    if let Some(t) = training {
        keep = t.keep;
        files.push(("optimizer.safetensors", crate::runtime::checkpoint::moments_bytes(g, t.moments, &same_shape)?));
        files.push(("trainer_state.json", t.state_json.into_bytes()));
        files.extend(t.extra);
    }
    write_dir_atomic_keeping(dir, &files, &keep)
}
