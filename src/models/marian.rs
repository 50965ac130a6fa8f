//! Hugging Face Marian directories (MarianMTModel, the OPUS-MT models): config.json mapped onto
//! a [`TransformerConfig`], and the weights' names onto the Transformer graph's (the q, k and v
//! projections packed into `in_proj`, the shared embedding as the tied table, the final logits
//! bias as the generator's bias). Settings this engine does not run are errors naming the field.

use super::transformer::TransformerConfig;
use crate::error::{Error, Result};
use crate::util::io::NamedTensor;
use serde_json::Value;
use std::path::Path;

/// The Transformer configuration of a Marian config.json (`path` names it in errors).
pub fn config_from_json(text: &str, path: &Path) -> Result<TransformerConfig> {
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or_default();
    if model_type != "marian" {
        return Err(bad(format!("model_type is {model_type:?}, not \"marian\"")));
    }
    let int = |key: &str| -> Result<usize> {
        let n = v.get(key).and_then(Value::as_u64).ok_or_else(|| bad(format!("{key} is missing or not a number")))?;
        usize::try_from(n).map_err(|_| bad(format!("{key} {n} is too large")))
    };
    let flag = |key: &str, default: bool| v.get(key).and_then(Value::as_bool).unwrap_or(default);
    let same = |a: &str, b: &str| -> Result<usize> {
        let (x, y) = (int(a)?, int(b)?);
        if x != y {
            return Err(bad(format!("{a} {x} and {b} {y} differ: this engine runs equal encoder and decoder widths")));
        }
        Ok(x)
    };
    let vocab = int("vocab_size")?;
    if v.get("decoder_vocab_size").is_some_and(|d| !d.is_null()) && int("decoder_vocab_size")? != vocab {
        return Err(bad(format!(
            "decoder_vocab_size differs from vocab_size {vocab}: separate vocabularies are not supported"
        )));
    }
    for (key, default, want) in [
        ("share_encoder_decoder_embeddings", true, true),
        ("tie_word_embeddings", true, true),
        ("static_position_embeddings", true, true),
        ("normalize_before", false, false),
        ("add_final_layer_norm", false, false),
        ("normalize_embedding", false, false),
    ] {
        if flag(key, default) != want {
            return Err(bad(format!("{key} {} is not supported (only {want})", !want)));
        }
    }
    let activation = match v.get("activation_function").and_then(Value::as_str).unwrap_or("gelu") {
        "swish" | "silu" => "silu",
        "gelu" => "gelu",
        "relu" => "relu",
        other => return Err(bad(format!("activation_function {other:?} is not supported (swish, silu, gelu, relu)"))),
    };
    let id = |key: &str| int(key).and_then(|n| u32::try_from(n).map_err(|_| bad(format!("{key} is too large"))));
    let pad = id("pad_token_id")?;
    let start = match v.get("decoder_start_token_id") {
        Some(x) if !x.is_null() => id("decoder_start_token_id")?,
        _ => pad,
    };
    let cfg = TransformerConfig {
        vocab_size: vocab,
        d_model: int("d_model")?,
        num_heads: same("encoder_attention_heads", "decoder_attention_heads")?,
        encoder_layers: int("encoder_layers")?,
        decoder_layers: int("decoder_layers")?,
        d_ff: same("encoder_ffn_dim", "decoder_ffn_dim")?,
        activation: activation.into(),
        norm: "post".into(),
        layer_norm_eps: 1e-5,
        final_norm: false,
        tie_embeddings: true,
        pad_id: pad,
        bos_id: start,
        eos_id: id("eos_token_id")?,
        label_smoothing: 0.0,
        dropout: v.get("dropout").and_then(Value::as_f64).unwrap_or(0.1) as f32,
        positional_encoding: "sinusoidal_halves".into(),
        embedding_scale: if flag("scale_embedding", false) { "sqrt_d_model" } else { "none" }.into(),
        embedding_padding: true,
        decoder_start_id: Some(start),
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// A Marian directory's weights: model.safetensors, or else pytorch_model.bin (read without
/// running its pickle); with the path they came from.
pub fn read_weights(dir: &Path) -> Result<(Vec<NamedTensor>, std::path::PathBuf)> {
    let safetensors = dir.join("model.safetensors");
    let bin = dir.join("pytorch_model.bin");
    if !safetensors.is_file() && bin.is_file() {
        let bytes = std::fs::read(&bin).map_err(|source| Error::Io { path: bin.display().to_string(), source })?;
        return Ok((crate::util::torch_pickle::read(&bytes, &bin.display().to_string())?, bin));
    }
    Ok((crate::util::io::read_safetensors(&safetensors)?, safetensors))
}

/// Where a Marian tensor goes in the graph: the graph's name, and for a q, k or v projection
/// its third of the packed `in_proj` (0, 1, 2).
pub fn graph_name(hf: &str) -> Option<(String, Option<usize>)> {
    match hf {
        "model.shared.weight" => return Some(("tgt_embed.weight".into(), None)),
        "final_logits_bias" => return Some(("generator.bias".into(), None)),
        _ => {}
    }
    let (side, rest) = if let Some(r) = hf.strip_prefix("model.encoder.layers.") {
        ("encoder", r)
    } else {
        ("decoder", hf.strip_prefix("model.decoder.layers.")?)
    };
    let (layer, rest) = rest.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    let prefix = format!("transformer.{side}.layers.{layer}");
    let attention = |name: &str, proj: &str| -> Option<(String, Option<usize>)> {
        let part = ["q_proj", "k_proj", "v_proj"].iter().position(|p| *p == proj);
        match part {
            Some(i) => Some((format!("{prefix}.{name}.in_proj_{param}"), Some(i))),
            None if proj == "out_proj" => Some((format!("{prefix}.{name}.out_proj.{param}"), None)),
            None => None,
        }
    };
    let plain = |name: &str| Some((format!("{prefix}.{name}.{param}"), None));
    match (side, module.split_once('.')) {
        (_, Some(("self_attn", proj))) => attention("self_attn", proj),
        ("decoder", Some(("encoder_attn", proj))) => attention("multihead_attn", proj),
        (_, None) => match (side, module) {
            (_, "self_attn_layer_norm") => plain("norm1"),
            ("encoder", "final_layer_norm") => plain("norm2"),
            ("decoder", "encoder_attn_layer_norm") => plain("norm2"),
            ("decoder", "final_layer_norm") => plain("norm3"),
            (_, "fc1") => plain("linear1"),
            (_, "fc2") => plain("linear2"),
            _ => None,
        },
        _ => None,
    }
}

/// The graph's parameters (name, values) from a Marian model's tensors, q, k and v packed.
/// Tensors the graph has no place for (the positional table, which is computed) are skipped;
/// a parameter the file lacks is an error naming it.
pub fn params_from(tensors: &[NamedTensor], cfg: &TransformerConfig, path: &Path) -> Result<Vec<(String, Vec<f32>)>> {
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    let mut out: std::collections::BTreeMap<String, Vec<Option<Vec<f32>>>> = Default::default();
    for t in tensors {
        // The shared table may come under its tied names only.
        let name = match t.name.as_str() {
            "model.encoder.embed_tokens.weight" | "model.decoder.embed_tokens.weight" | "lm_head.weight" => {
                "model.shared.weight"
            }
            n => n,
        };
        let Some((graph, part)) = graph_name(name) else { continue };
        let slot = out.entry(graph).or_insert_with(|| vec![None; 3]);
        slot[part.unwrap_or(0)].get_or_insert(t.f32(path)?.to_vec());
    }
    let reference = super::transformer::build(cfg, 1, 1, 1, false)?;
    let g = &reference.graph;
    g.params()
        .into_iter()
        .map(|p| {
            let d = g.desc(p);
            let parts = out.remove(&d.name).ok_or_else(|| bad(format!("no tensor for {}", d.name)))?;
            let packed = d.name.contains("in_proj_");
            let values: Vec<f32> = match packed {
                true => parts.into_iter().enumerate().try_fold(Vec::new(), |mut acc, (i, part)| {
                    let part = part
                        .ok_or_else(|| bad(format!("{}: its {} projection is missing", d.name, ["q", "k", "v"][i])))?;
                    acc.extend(part);
                    Ok::<_, Error>(acc)
                })?,
                false => parts.into_iter().next().flatten().unwrap_or_default(),
            };
            if values.len() != d.len() {
                return Err(bad(format!("{} has {} values, the config needs {:?}", d.name, values.len(), d.shape)));
            }
            Ok((d.name.clone(), values))
        })
        .collect()
}

/// The Marian names (with their shapes) of the graph parameter `name` of shape `shape`, and the
/// rows each takes: a packed `in_proj` is three tensors. The generator's bias is Marian's
/// `final_logits_bias`, a buffer: it has none.
pub fn hf_names(name: &str, shape: &[usize]) -> Vec<(String, Vec<usize>, std::ops::Range<usize>)> {
    let rows = shape.first().copied().unwrap_or(0);
    let whole = |hf: String| vec![(hf, shape.to_vec(), 0..rows)];
    if name == "tgt_embed.weight" {
        return whole("model.shared.weight".into());
    }
    if name == "generator.bias" {
        return vec![];
    }
    let Some(rest) = name.strip_prefix("transformer.") else { return vec![] };
    let (side, rest) = rest.split_once(".layers.").unwrap_or(("", rest));
    let Some((layer, rest)) = rest.split_once('.') else { return vec![] };
    let prefix = format!("model.{side}.layers.{layer}");
    let (module, param) = rest.rsplit_once('.').unwrap_or((rest, ""));
    let attention = match module {
        "self_attn" => Some("self_attn"),
        "multihead_attn" => Some("encoder_attn"),
        _ => None,
    };
    if let (Some(att), Some(kind)) = (attention, param.strip_prefix("in_proj_")) {
        let third = rows / 3;
        let sub = |i: usize| {
            let mut s = shape.to_vec();
            s[0] = third;
            (format!("{prefix}.{att}.{}_proj.{kind}", ["q", "k", "v"][i]), s, i * third..(i + 1) * third)
        };
        return (0..3).map(sub).collect();
    }
    let module = match (side, module) {
        (_, "self_attn.out_proj") => "self_attn.out_proj".to_string(),
        ("decoder", "multihead_attn.out_proj") => "encoder_attn.out_proj".into(),
        (_, "norm1") => "self_attn_layer_norm".into(),
        ("encoder", "norm2") => "final_layer_norm".into(),
        ("decoder", "norm2") => "encoder_attn_layer_norm".into(),
        ("decoder", "norm3") => "final_layer_norm".into(),
        (_, "linear1") => "fc1".into(),
        (_, "linear2") => "fc2".into(),
        _ => return vec![],
    };
    whole(format!("{prefix}.{module}.{param}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_graph_parameter_has_marian_names_that_map_back_to_it() {
        let cfg = TransformerConfig { tie_embeddings: true, ..TransformerConfig::tiny(100) };
        let t = super::super::transformer::build(&cfg, 1, 2, 2, false).unwrap();
        for p in t.graph.params() {
            let d = t.graph.desc(p);
            let names = hf_names(&d.name, &d.shape);
            if d.name == "generator.bias" {
                assert!(names.is_empty());
                assert_eq!(graph_name("final_logits_bias").unwrap().0, d.name);
                continue;
            }
            assert!(!names.is_empty(), "{} has no Marian name", d.name);
            for (i, (hf, _, _)) in names.iter().enumerate() {
                let (back, part) = graph_name(hf).unwrap_or_else(|| panic!("{hf} maps nowhere"));
                assert_eq!(back, d.name, "{hf}");
                assert_eq!(part.unwrap_or(0), if names.len() == 3 { i } else { 0 });
            }
        }
    }

    #[test]
    fn unsupported_settings_are_errors_naming_the_field() {
        let base = r#"{"model_type": "marian", "vocab_size": 10, "d_model": 8, "encoder_attention_heads": 2,
            "decoder_attention_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 16,
            "decoder_ffn_dim": 16, "pad_token_id": 9, "eos_token_id": 0, "activation_function": "swish"}"#;
        let p = Path::new("config.json");
        let cfg = config_from_json(base, p).unwrap();
        assert_eq!((cfg.activation.as_str(), cfg.decoder_start(), cfg.embedding_scale.as_str()), ("silu", 9, "none"));
        for (edit, field) in [
            (r#""normalize_before": true"#, "normalize_before"),
            (r#""activation_function": "tanh""#, "activation_function"),
            (r#""decoder_ffn_dim": 32"#, "decoder_ffn_dim"),
            (r#""decoder_vocab_size": 11"#, "decoder_vocab_size"),
            (r#""model_type": "bart""#, "model_type"),
        ] {
            // A later key replaces an earlier one.
            let text = format!("{}, {edit}}}", base.trim_end().trim_end_matches('}'));
            let e = config_from_json(&text, p).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
