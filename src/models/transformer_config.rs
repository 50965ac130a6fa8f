//! The Transformer's configuration: the sizes and options of config.json, presets, validation.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The model's configuration (config.json of a reference case or a checkpoint).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TransformerConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub num_heads: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub d_ff: usize,
    #[serde(default = "default_activation")]
    pub activation: String,
    #[serde(default = "default_norm")]
    pub norm: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// nn.Transformer's final encoder and decoder LayerNorms (the paper has none).
    #[serde(default)]
    pub final_norm: bool,
    /// One matrix for both embeddings and the output projection, as in the paper; stored as
    /// `tgt_embed.weight`.
    #[serde(default)]
    pub tie_embeddings: bool,
    #[serde(default)]
    pub pad_id: u32,
    #[serde(default = "default_bos")]
    pub bos_id: u32,
    #[serde(default = "default_eos")]
    pub eos_id: u32,
    #[serde(default)]
    pub label_smoothing: f32,
    /// Dropout on the embedding sums and on every sublayer's output (training only).
    #[serde(default)]
    pub dropout: f32,
    #[serde(default = "default_pe")]
    pub positional_encoding: String,
    #[serde(default = "default_scale")]
    pub embedding_scale: String,
    /// The pad row of the embeddings gets no gradient (nn.Embedding's `padding_idx`, as Marian
    /// trains it).
    #[serde(default)]
    pub embedding_padding: bool,
    /// The token the decoder starts from (Marian: the pad id); `None`: `bos_id`.
    #[serde(default)]
    pub decoder_start_id: Option<u32>,
}

fn default_activation() -> String {
    "relu".into()
}
fn default_norm() -> String {
    "post".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_bos() -> u32 {
    1
}
fn default_eos() -> u32 {
    2
}
fn default_pe() -> String {
    "sinusoidal".into()
}
fn default_scale() -> String {
    "sqrt_d_model".into()
}

impl TransformerConfig {
    /// The paper's base model (d 512, 8 heads, 6 + 6 layers, FFN 2048, tied embeddings).
    pub fn base(vocab_size: usize) -> Self {
        TransformerConfig {
            vocab_size,
            d_model: 512,
            num_heads: 8,
            encoder_layers: 6,
            decoder_layers: 6,
            d_ff: 2048,
            activation: default_activation(),
            norm: default_norm(),
            layer_norm_eps: 1e-5,
            final_norm: false,
            tie_embeddings: true,
            pad_id: 0,
            bos_id: 1,
            eos_id: 2,
            label_smoothing: 0.1,
            dropout: 0.1,
            positional_encoding: default_pe(),
            embedding_scale: default_scale(),
            embedding_padding: false,
            decoder_start_id: None,
        }
    }

    /// A small model that trains on the bundled German-English pairs within an hour on two
    /// CPU cores: d 128, 4 heads of 32, 3 + 3 layers, FFN 512, tied embeddings.
    pub fn small(vocab_size: usize) -> Self {
        TransformerConfig {
            d_model: 128,
            num_heads: 4,
            encoder_layers: 3,
            decoder_layers: 3,
            d_ff: 512,
            ..Self::base(vocab_size)
        }
    }

    /// A very small model for quick runs and tests: d 64, 2 heads of 32, 1 + 1 layers, FFN 128.
    pub fn tiny(vocab_size: usize) -> Self {
        TransformerConfig {
            d_model: 64,
            num_heads: 2,
            encoder_layers: 1,
            decoder_layers: 1,
            d_ff: 128,
            ..Self::base(vocab_size)
        }
    }

    /// `tiny`, `small` or `base` for a vocabulary of `vocab_size`, or the config.json at that
    /// path with its vocab_size replaced.
    pub fn preset_or_file(name: &str, vocab_size: usize) -> Result<Self> {
        Ok(match name {
            "tiny" => Self::tiny(vocab_size),
            "small" => Self::small(vocab_size),
            "base" => Self::base(vocab_size),
            path => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_string(), source })?;
                let mut cfg = Self::from_json(&text)?;
                cfg.vocab_size = vocab_size;
                cfg
            }
        })
    }

    /// Parses config.json text and checks it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| Error::Config(format!("Transformer config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// config.json's text, with model_type "transformer".
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("model_type".into(), "transformer".into());
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// Checks that the sizes fit together and the options are ones this model implements.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        use super::{check_sizes, MAX_FFN, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH};
        check_sizes(&[
            ("encoder_layers", self.encoder_layers, MAX_LAYERS),
            ("decoder_layers", self.decoder_layers, MAX_LAYERS),
            ("d_model", self.d_model, MAX_WIDTH),
            ("num_heads", self.num_heads, MAX_WIDTH),
            ("d_ff", self.d_ff, MAX_FFN),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
        ])?;
        if self.num_heads == 0 || !self.d_model.is_multiple_of(self.num_heads) {
            return bad(format!("d_model {} is not divisible by {} heads", self.d_model, self.num_heads));
        }
        if self.vocab_size == 0 || self.d_ff == 0 || self.encoder_layers == 0 || self.decoder_layers == 0 {
            return bad("vocab_size, d_ff and the layer counts must be positive".into());
        }
        for (what, id) in [("pad_id", self.pad_id), ("bos_id", self.bos_id), ("eos_id", self.eos_id)] {
            if id as usize >= self.vocab_size {
                return bad(format!("{what} {id} is outside the vocabulary of {}", self.vocab_size));
            }
        }
        let options: [(&str, &str, &[&str]); 4] = [
            ("activation", &self.activation, &["relu", "silu", "gelu"]),
            ("norm", &self.norm, &["post"]),
            ("positional_encoding", &self.positional_encoding, &["sinusoidal", "sinusoidal_halves"]),
            ("embedding_scale", &self.embedding_scale, &["sqrt_d_model", "none"]),
        ];
        for (what, got, allowed) in options {
            if !allowed.contains(&got) {
                return bad(format!("{what} {got:?} is not supported (one of {allowed:?})"));
            }
        }
        if let Some(id) = self.decoder_start_id.filter(|&id| id as usize >= self.vocab_size) {
            return bad(format!("decoder_start_id {id} is outside the vocabulary of {}", self.vocab_size));
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("dropout and label_smoothing must be in [0, 1)".into());
        }
        Ok(())
    }

    /// The positional encodings of positions 0..len, (len, d_model).
    pub fn positional_table(&self, len: usize) -> Vec<f32> {
        match self.positional_encoding.as_str() {
            "sinusoidal_halves" => positional_halves(len, self.d_model),
            _ => positional_encoding(len, self.d_model),
        }
    }

    /// The decoder's first input token.
    pub fn decoder_start(&self) -> u32 {
        self.decoder_start_id.unwrap_or(self.bos_id)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.num_heads
    }
}

/// PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same), for pos < len: (len, d).
pub fn positional_encoding(len: usize, d: usize) -> Vec<f32> {
    let mut pe = vec![0.0f32; len * d];
    for pos in 0..len {
        for i in (0..d).step_by(2) {
            let angle = pos as f64 / 10000f64.powf(i as f64 / d as f64);
            pe[pos * d + i] = angle.sin() as f32;
            if i + 1 < d {
                pe[pos * d + i + 1] = angle.cos() as f32;
            }
        }
    }
    pe
}

/// Marian's table: sin of the frequencies in columns [0, d/2) and cos in [d/2, d), where
/// column j's angle is pos / 10000^(2 floor(j/2) / d) (XLM's table, halves not interleaved).
pub fn positional_halves(len: usize, d: usize) -> Vec<f32> {
    let half = d.div_ceil(2);
    let mut pe = vec![0.0f32; len * d];
    for pos in 0..len {
        for j in 0..d {
            let angle = |j: usize| pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / d as f64);
            pe[pos * d + j] = match j < half {
                true => angle(2 * j).sin() as f32,
                false => angle(2 * (j - half) + 1).cos() as f32,
            };
        }
    }
    pe
}
