//! The Vision Transformer (Dosovitskiy et al., 2020) as Hugging Face's ViTForImageClassification
//! builds it: patch embedding, class token, learned position embeddings, pre-norm encoder
//! blocks, final LayerNorm, classifier on the class token. Parameters carry the Hub checkpoint
//! names (google/vit-base-patch16-224 layout).

use crate::error::{Error, Result};
use crate::graph::GeluKind;
use crate::graph::{AttentionPolicy, Dtype, Graph, TensorId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The fields of a Hugging Face ViTConfig (config.json) that the model uses.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct VitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub hidden_dropout_prob: f32,
    #[serde(default)]
    pub attention_probs_dropout_prob: f32,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    /// Used when id2label is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
}

fn default_channels() -> usize {
    3
}
fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}
fn default_true() -> bool {
    true
}

impl VitConfig {
    /// A ViT of the given width and depth, 1000 ImageNet classes, patch 16 at 224x224.
    fn imagenet(hidden: usize, layers: usize, heads: usize) -> Self {
        VitConfig {
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            layer_norm_eps: 1e-12,
            qkv_bias: true,
            id2label: BTreeMap::new(),
            num_labels: Some(1000),
        }
    }

    /// The default for Fashion-MNIST (28x28 grey, 10 classes): patch 4, width 96, depth 4.
    pub fn fashion_mnist() -> Self {
        let id2label =
            crate::data::mnist::CLASSES.iter().enumerate().map(|(i, c)| (i.to_string(), c.to_string())).collect();
        VitConfig {
            image_size: 28,
            patch_size: 7,
            num_channels: 1,
            hidden_size: 96,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 192,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.0,
            layer_norm_eps: 1e-6,
            qkv_bias: true,
            id2label,
            num_labels: None,
        }
    }

    /// The named presets: vit-tiny, vit-small, vit-base (ViT-B/16), all 224x224, patch 16;
    /// vit-fmnist, the Fashion-MNIST default; vit-cifar, 32x32 RGB in patches of 4 (64 tokens),
    /// width 192, 3 heads, depth 4, MLP 768, 10 classes (the step that issue 7 times Burn with).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "vit-fmnist" => Some(Self::fashion_mnist()),
            "vit-tiny" => Some(Self::imagenet(192, 12, 3)),
            "vit-small" => Some(Self::imagenet(384, 12, 6)),
            "vit-base" => Some(Self::imagenet(768, 12, 12)),
            "vit-cifar" => Some(VitConfig {
                image_size: 32,
                patch_size: 4,
                num_hidden_layers: 4,
                num_labels: Some(10),
                ..Self::imagenet(192, 12, 3)
            }),
            _ => None,
        }
    }

    /// Parses config.json text, checking that the sizes fit together.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: VitConfig = serde_json::from_str(text).map_err(|e| Error::Config(format!("ViT config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// config.json as Hugging Face writes it for ViTForImageClassification.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("model_type".into(), "vit".into());
            map.insert("architectures".into(), serde_json::json!(["ViTForImageClassification"]));
            let labels: serde_json::Map<String, serde_json::Value> =
                (0..self.labels()).map(|i| (self.label_name(i), serde_json::Value::from(i))).collect();
            map.insert("label2id".into(), labels.into());
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// The name of class `i` (id2label, else LABEL_i).
    pub fn label_name(&self, i: usize) -> String {
        self.id2label.get(&i.to_string()).cloned().unwrap_or_else(|| format!("LABEL_{i}"))
    }

    /// Number of output classes.
    pub fn labels(&self) -> usize {
        if self.id2label.is_empty() {
            self.num_labels.unwrap_or(2)
        } else {
            self.id2label.len()
        }
    }

    /// Patches per image.
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    fn gelu(&self) -> Result<GeluKind> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(GeluKind::Exact),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(GeluKind::Tanh),
            other => Err(Error::Config(format!("hidden_act {other:?} is not supported (gelu, gelu_new)"))),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        use super::{check_sizes, MAX_FFN, MAX_IMAGE_SIDE, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH};
        check_sizes(&[
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("num_attention_heads", self.num_attention_heads, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_FFN),
            ("image_size", self.image_size, MAX_IMAGE_SIDE),
            ("num_channels", self.num_channels, 4),
            ("labels", self.labels(), MAX_VOCAB),
        ])?;
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return bad(format!("image_size {} is not a multiple of patch_size {}", self.image_size, self.patch_size));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by {} heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.labels() == 0 || self.num_hidden_layers == 0 || self.intermediate_size == 0 || self.num_channels == 0 {
            return bad("labels, layers, intermediate_size and channels must be positive".into());
        }
        self.gelu().map(|_| ())
    }
}

/// How pixels are normalised before the model: (x / 255 - mean) / std per channel, as in a
/// Hugging Face preprocessor_config.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub image_mean: Vec<f32>,
    pub image_std: Vec<f32>,
}

impl Preprocess {
    /// Hugging Face's ViTImageProcessor default: mean 0.5, std 0.5 per channel.
    pub fn default_for(channels: usize) -> Self {
        Preprocess { image_mean: vec![0.5; channels], image_std: vec![0.5; channels] }
    }

    /// preprocessor_config.json's text.
    pub fn to_json(&self, size: usize) -> String {
        let v = serde_json::json!({
            "image_processor_type": "ViTImageProcessor",
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": self.image_mean, "image_std": self.image_std,
            "do_resize": true, "size": {"height": size, "width": size},
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}

/// A ViT graph and the tensors a caller feeds and reads.
pub struct VitGraph {
    pub graph: Graph,
    /// (B, C, H, W) f32 input.
    pub pixel_values: TensorId,
    /// (B) u32 class ids.
    pub labels: TensorId,
    /// (B, 1, classes).
    pub logits: TensorId,
    /// Mean cross-entropy, `[1]`.
    pub loss: TensorId,
}

/// Builds the forward graph and loss for `batch` images; `train` enables the config's dropout.
/// Attention takes the fused op; [`build_with`] for another policy.
pub fn build(cfg: &VitConfig, batch: usize, train: bool) -> Result<VitGraph> {
    build_with(cfg, batch, train, AttentionPolicy::Fused)
}

/// [`build`], with attention built as `attention` says (`kernels::attention::policy(gpu)` for
/// the adapter that will run it).
pub fn build_with(cfg: &VitConfig, batch: usize, train: bool, attention: AttentionPolicy) -> Result<VitGraph> {
    cfg.validate()?;
    let (c, p, n) = (cfg.hidden_size, cfg.patch_size, cfg.patches());
    let eps = cfg.layer_norm_eps as f32;
    let drop = |prob: f32| if train { prob } else { 0.0 };
    let mut g = Graph::with_attention(attention);
    let pixel_values = g.input("pixel_values", &[batch, cfg.num_channels, cfg.image_size, cfg.image_size], Dtype::F32);
    let labels = g.input("labels", &[batch], Dtype::U32);

    let e = "vit.embeddings";
    // Conv2d(kernel = stride = P) as patch extraction + matmul; the weight (C, ch, P, P) is
    // held as (C, ch*P*P), the same memory.
    let w = g.param(&format!("{e}.patch_embeddings.projection.weight"), &[c, cfg.num_channels * p * p]);
    let b = g.param(&format!("{e}.patch_embeddings.projection.bias"), &[c]);
    let cls = g.param(&format!("{e}.cls_token"), &[1, 1, c]);
    let pos = g.param(&format!("{e}.position_embeddings"), &[1, n + 1, c]);
    let patches = g.patchify(pixel_values, p)?;
    let x = g.linear(patches, w, Some(b))?;
    let x = g.concat_tokens(cls, x)?;
    let x = g.add(x, pos)?;
    let mut x = g.dropout(x, drop(cfg.hidden_dropout_prob))?;

    let act = cfg.gelu()?;
    for i in 0..cfg.num_hidden_layers {
        let l = format!("vit.encoder.layer.{i}");
        let linear = |g: &mut Graph, x: TensorId, name: &str, out: usize, inp: usize, bias: bool| -> Result<TensorId> {
            let w = g.param(&format!("{l}.{name}.weight"), &[out, inp]);
            let b = bias.then(|| g.param(&format!("{l}.{name}.bias"), &[out]));
            g.linear(x, w, b)
        };
        let h = layernorm(&mut g, x, &format!("{l}.layernorm_before"), c, eps)?;
        let q = linear(&mut g, h, "attention.attention.query", c, c, cfg.qkv_bias)?;
        let k = linear(&mut g, h, "attention.attention.key", c, c, cfg.qkv_bias)?;
        let v = linear(&mut g, h, "attention.attention.value", c, c, cfg.qkv_bias)?;
        let a = g.attention(q, k, v, cfg.num_attention_heads, None, false, drop(cfg.attention_probs_dropout_prob))?;
        let a = linear(&mut g, a, "attention.output.dense", c, c, true)?;
        let a = g.dropout(a, drop(cfg.hidden_dropout_prob))?;
        x = g.add(x, a)?;
        let h = layernorm(&mut g, x, &format!("{l}.layernorm_after"), c, eps)?;
        let h = linear(&mut g, h, "intermediate.dense", cfg.intermediate_size, c, true)?;
        let h = g.gelu(h, act)?;
        let h = linear(&mut g, h, "output.dense", c, cfg.intermediate_size, true)?;
        let h = g.dropout(h, drop(cfg.hidden_dropout_prob))?;
        x = g.add(x, h)?;
    }
    let x = layernorm(&mut g, x, "vit.layernorm", c, eps)?;
    let cls_out = g.slice_tokens(x, 0, 1)?;
    let wc = g.param("classifier.weight", &[cfg.labels(), c]);
    let bc = g.param("classifier.bias", &[cfg.labels()]);
    let logits = g.linear(cls_out, wc, Some(bc))?;
    let loss = g.cross_entropy(logits, labels, 0.0, None)?;
    Ok(VitGraph { graph: g, pixel_values, labels, logits, loss })
}

/// Initial parameter values as Hugging Face initialises ViT: weights and embeddings from a
/// normal with standard deviation 0.02 truncated at 2 sigma, biases 0, LayerNorm weights 1.
pub fn init_params(g: &Graph, seed: u64) -> Vec<(TensorId, Vec<f32>)> {
    let mut rng = crate::util::rng::Rng::new(seed);
    g.params()
        .into_iter()
        .map(|p| {
            let d = g.desc(p);
            let values = if d.name.ends_with(".bias") {
                vec![0.0; d.len()]
            } else if d.name.contains("layernorm") {
                vec![1.0; d.len()]
            } else {
                (0..d.len()).map(|_| rng.trunc_normal(0.02)).collect()
            };
            (p, values)
        })
        .collect()
}

/// The shape a parameter has in a Hugging Face checkpoint: the patch projection is a Conv2d
/// weight (C, channels, P, P), held in the graph as (C, channels * P * P).
pub fn stored_shape(cfg: &VitConfig) -> impl Fn(&str, &[usize]) -> Vec<usize> + '_ {
    move |name: &str, shape: &[usize]| {
        if name == "vit.embeddings.patch_embeddings.projection.weight" {
            vec![cfg.hidden_size, cfg.num_channels, cfg.patch_size, cfg.patch_size]
        } else {
            shape.to_vec()
        }
    }
}

fn layernorm(g: &mut Graph, x: TensorId, name: &str, c: usize, eps: f32) -> Result<TensorId> {
    let w = g.param(&format!("{name}.weight"), &[c]);
    let b = g.param(&format!("{name}.bias"), &[c]);
    g.layernorm(x, w, b, eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_base_has_the_published_parameter_count() {
        let v = build(&VitConfig::preset("vit-base").expect("preset"), 1, false).expect("builds");
        let count: usize = v.graph.params().iter().map(|&p| v.graph.desc(p).len()).sum();
        // ViT-B/16 with a 1000-class head: 86.6M parameters (86,567,656).
        assert_eq!(count, 86_567_656);
    }

    #[test]
    fn golden_config_parses() {
        let text = r#"{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
            "image_size": 32, "patch_size": 8, "id2label": {"0": "a", "1": "b"}, "layer_norm_eps": 1e-12}"#;
        let cfg = VitConfig::from_json(text).expect("parses");
        assert_eq!((cfg.labels(), cfg.patches(), cfg.num_channels), (2, 16, 3));
        let bad = text.replace("\"patch_size\": 8", "\"patch_size\": 5");
        assert!(VitConfig::from_json(&bad).is_err());
    }
}
