//! ViT checkpoint directories in the Hugging Face layout: config.json, model.safetensors and
//! preprocessor_config.json; training adds optimizer.safetensors and trainer_state.json. A
//! directory is replaced atomically, so a crash never leaves half a checkpoint.

use super::vit::{stored_shape, Preprocess, VitConfig};
use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};

use crate::util::io::write_dir_atomic_keeping;
use std::path::Path;

pub use crate::runtime::checkpoint::{load_moments, TrainingState};

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// Reads config.json.
pub fn load_config(dir: &Path) -> Result<VitConfig> {
    let path = dir.join("config.json");
    VitConfig::from_json(&read_text(&path)?)
        .map_err(|e| Error::Format { path: path.display().to_string(), msg: e.to_string() })
}

/// Reads preprocessor_config.json, or Hugging Face's default normalisation when it is absent.
pub fn load_preprocess(dir: &Path, cfg: &VitConfig) -> Result<Preprocess> {
    let path = dir.join("preprocessor_config.json");
    if !path.exists() {
        return Ok(Preprocess::default_for(cfg.num_channels));
    }
    parse_preprocess(&read_text(&path)?, cfg, &path)
}

/// preprocessor_config.json's text (from `path`, for errors), checked against `cfg`.
pub fn parse_preprocess(text: &str, cfg: &VitConfig, path: &Path) -> Result<Preprocess> {
    let p: Preprocess = serde_json::from_str(text)
        .map_err(|e| Error::Format { path: path.display().to_string(), msg: e.to_string() })?;
    if p.image_mean.len() != cfg.num_channels || p.image_std.len() != cfg.num_channels || p.image_std.contains(&0.0) {
        return Err(Error::Format {
            path: path.display().to_string(),
            msg: format!("needs {} means and non-zero stds", cfg.num_channels),
        });
    }
    Ok(p)
}

/// Writes a checkpoint directory.
pub fn save(
    dir: &Path,
    cfg: &VitConfig,
    pre: &Preprocess,
    g: &Graph,
    params: &[(TensorId, Vec<f32>)],
    training: Option<TrainingState>,
) -> Result<()> {
    let keep = training.as_ref().map(|t| t.keep.clone()).unwrap_or_default();
    write_dir_atomic_keeping(dir, &files(cfg, pre, g, params, training)?, &keep)
}

/// A checkpoint's files (name, bytes), without its `keep` links.
pub fn files<'a>(
    cfg: &VitConfig,
    pre: &Preprocess,
    g: &Graph,
    params: &[(TensorId, Vec<f32>)],
    training: Option<TrainingState<'a>>,
) -> Result<Vec<(&'a str, Vec<u8>)>> {
    let stored = stored_shape(cfg);
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("config.json", cfg.to_json().into_bytes()),
        ("preprocessor_config.json", pre.to_json(cfg.image_size).into_bytes()),
        ("model.safetensors", crate::runtime::checkpoint::params_bytes(g, params, &stored)?),
    ];
    if let Some(t) = training {
        files.push(("optimizer.safetensors", crate::runtime::checkpoint::moments_bytes(g, t.moments, &stored)?));
        files.push(("trainer_state.json", t.state_json.into_bytes()));
        files.extend(t.extra);
    }
    Ok(files)
}
