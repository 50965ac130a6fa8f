//! A Transformer reference case: `src`, `tgt_in`, `tgt_out` and `src_lengths` from
//! inputs.safetensors through the model of config.json, with the masks checked against the
//! lengths (this model masks by length: trailing padding only).

use super::{find, ids, Case, Output};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::transformer::{build, TransformerConfig};
use crate::runtime::exec::HostData;
use std::path::Path;

/// Forward and backward of the case in `dir`: logits (B, T, V), loss and every gradient.
pub fn verify(gpu: &Gpu, dir: &Path) -> Result<Vec<Output>> {
    let cfg = TransformerConfig::from_json(&super::read_config(dir)?)?;
    let path = dir.join("inputs.safetensors");
    let inputs = crate::util::io::read_safetensors(&path)?;
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    let tensor = |name: &str| find(&inputs, &path, name);
    let src = tensor("src")?;
    let [batch, src_len] = src.shape[..] else { return Err(bad(format!("src has shape {:?}, not (B, S)", src.shape))) };
    let tgt_in = tensor("tgt_in")?;
    let tgt_len = tgt_in.shape.get(1).copied().unwrap_or(0);
    if tgt_in.shape != [batch, tgt_len] || tensor("tgt_out")?.shape != tgt_in.shape {
        return Err(bad(format!("tgt_in {:?} and tgt_out must both be ({batch}, T)", tgt_in.shape)));
    }
    let src_lens = ids(tensor("src_lengths")?, &path)?;
    if src_lens.len() != batch || src_lens.iter().any(|&l| l as usize > src_len) {
        return Err(bad(format!("src_lengths {src_lens:?} do not fit {batch} sources of {src_len} tokens")));
    }
    if let Ok(mask) = tensor("src_key_padding_mask") {
        let mask = ids(mask, &path)?;
        let by_length = (0..batch * src_len).all(|i| (mask[i] != 0) == (i % src_len >= src_lens[i / src_len] as usize));
        if !by_length {
            return Err(bad("src_key_padding_mask is not trailing padding after src_lengths".into()));
        }
    }
    let t = build(&cfg, batch, src_len, tgt_len, false)?;
    let (src_ids, tgt_in_ids, tgt_out_ids) = (ids(src, &path)?, ids(tgt_in, &path)?, ids(tensor("tgt_out")?, &path)?);
    let constants = t.constants();
    let mut feed = vec![
        (t.src, HostData::U32(&src_ids)),
        (t.src_lens, HostData::U32(&src_lens)),
        (t.tgt_in, HostData::U32(&tgt_in_ids)),
        (t.tgt_out, HostData::U32(&tgt_out_ids)),
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
    let params = crate::runtime::checkpoint::load_params(&dir.join("model.safetensors"), &t.graph, case.stored)?;
    super::run(gpu, t.graph, &params, &case)
}
