//! A Marian reference case (tests/golden/marian-s0, made by make_marian.py): `input_ids`,
//! `attention_mask`, `decoder_input_ids` and `labels` (-100 where ignored) from
//! inputs.safetensors through the Marian model of config.json and model.safetensors; the
//! gradients are reported under Marian's names (a packed projection as its q, k and v).

use super::{find, ids, Case, Output};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::marian;
use crate::models::transformer::build;
use crate::runtime::exec::HostData;
use crate::util::io::TensorData;
use std::path::Path;

/// Forward and backward of the case in `dir`: logits (B, T, V), loss and every gradient.
pub fn verify(gpu: &Gpu, dir: &Path) -> Result<Vec<Output>> {
    let cfg = marian::config_from_json(&super::read_config(dir)?, &dir.join("config.json"))?;
    let (tensors, model) = marian::read_weights(dir)?;
    let named = marian::params_from(&tensors, &cfg, &model)?;
    verify_with(gpu, dir, &cfg, named)
}

/// [`verify`] of the model `cfg` with parameters `named` (by graph name; a training run's,
/// say) on the inputs of the case in `dir`.
pub fn verify_with(
    gpu: &Gpu,
    dir: &Path,
    cfg: &crate::models::transformer::TransformerConfig,
    named: Vec<(String, Vec<f32>)>,
) -> Result<Vec<Output>> {
    let path = dir.join("inputs.safetensors");
    let inputs = crate::util::io::read_safetensors(&path)?;
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    let tensor = |name: &str| find(&inputs, &path, name);
    let src = tensor("input_ids")?;
    let [batch, src_len] = src.shape[..] else { return Err(bad(format!("input_ids {:?} is not (B, S)", src.shape))) };
    let tgt = tensor("decoder_input_ids")?;
    let tgt_len = tgt.shape.get(1).copied().unwrap_or(0);
    if tgt.shape != [batch, tgt_len] || tensor("labels")?.shape != tgt.shape {
        return Err(bad(format!("decoder_input_ids {:?} and labels must both be ({batch}, T)", tgt.shape)));
    }
    let src_lens = lengths(&ids(tensor("attention_mask")?, &path)?, src_len)
        .ok_or_else(|| bad("attention_mask is not ones then trailing zeros (this model masks by length)".into()))?;
    let labels = match &tensor("labels")?.data {
        // Ignored positions (-100) become the pad id, which the loss skips.
        TensorData::I64(v) => v.iter().map(|&l| if l < 0 { cfg.pad_id } else { l as u32 }).collect::<Vec<u32>>(),
        _ => return Err(bad("labels must be i64".into())),
    };
    let t = build(cfg, batch, src_len, tgt_len, false)?;
    let params = crate::models::translation::by_id(&t.graph, named, &path)?;
    let (src_ids, tgt_ids) = (ids(src, &path)?, ids(tgt, &path)?);
    let constants = t.constants();
    let mut feed = vec![
        (t.src, HostData::U32(&src_ids)),
        (t.src_lens, HostData::U32(&src_lens)),
        (t.tgt_in, HostData::U32(&tgt_ids)),
        (t.tgt_out, HostData::U32(&labels)),
    ];
    feed.extend(constants.iter().map(|(id, v)| (*id, HostData::F32(v))));
    let case = Case {
        loss: t.loss,
        logits: t.logits,
        logits_shape: vec![batch, tgt_len, cfg.vocab_size],
        wrt: vec![],
        feed: &feed,
        stored: &|_: &str, s: &[usize]| s.to_vec(),
    };
    let outputs = super::run(gpu, t.graph, &params, &case)?;
    Ok(outputs.into_iter().flat_map(marian_names).collect())
}

/// Each row's length from a (B, S) mask of ones then zeros; `None` if a row is not like that.
fn lengths(mask: &[u32], s: usize) -> Option<Vec<u32>> {
    mask.chunks(s.max(1))
        .map(|row| {
            let n = row.iter().take_while(|&&m| m == 1).count();
            row[n..].iter().all(|&m| m == 0).then_some(n as u32)
        })
        .collect()
}

/// An output under Marian's names: a gradient of a packed projection becomes three.
fn marian_names((name, shape, values): Output) -> Vec<Output> {
    let Some(param) = name.strip_prefix("grad.") else { return vec![(name, shape, values)] };
    let width: usize = shape.iter().skip(1).product();
    marian::hf_names(param, &shape)
        .into_iter()
        .map(|(hf, s, rows)| (format!("grad.{hf}"), s, values[rows.start * width..rows.end * width].to_vec()))
        .collect()
}
