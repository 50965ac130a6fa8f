//! The ViT on a reference case.

use super::{find, ids, Case, Output};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::vit::{build, stored_shape, VitConfig};
use crate::runtime::exec::HostData;
use std::path::Path;

/// Forward and backward of a reference case directory (../shared/golden format): config.json,
/// model.safetensors, inputs.safetensors with `pixel_values` and `labels`. Returns `logits`
/// (B, classes), `loss` (shape []), `grad.<parameter>` for every parameter (stored shapes) and
/// `grad.pixel_values`.
pub fn verify(gpu: &Gpu, dir: &Path) -> Result<Vec<Output>> {
    let cfg = VitConfig::from_json(&super::read_config(dir)?)?;
    let inputs_path = dir.join("inputs.safetensors");
    let inputs = crate::util::io::read_safetensors(&inputs_path)?;
    let pixels = find(&inputs, &inputs_path, "pixel_values")?;
    let batch = pixels.shape.first().copied().unwrap_or(0);
    let labels = ids(find(&inputs, &inputs_path, "labels")?, &inputs_path)?;
    let v = build(&cfg, batch, false)?;
    if pixels.shape != v.graph.shape(v.pixel_values) || labels.len() != batch {
        return Err(Error::Format {
            path: inputs_path.display().to_string(),
            msg: format!("pixel_values {:?} and {} labels do not fit the config", pixels.shape, labels.len()),
        });
    }
    let feed = [(v.pixel_values, HostData::F32(pixels.f32(&inputs_path)?)), (v.labels, HostData::U32(&labels))];
    let case = Case {
        loss: v.loss,
        logits: v.logits,
        logits_shape: vec![batch, cfg.labels()],
        wrt: vec![v.pixel_values],
        feed: &feed,
        stored: &stored_shape(&cfg),
    };
    let params = crate::runtime::checkpoint::load_params(&dir.join("model.safetensors"), &v.graph, case.stored)?;
    super::run(gpu, v.graph, &params, &case)
}
