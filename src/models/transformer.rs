//! The Transformer of "Attention Is All You Need" (Vaswani et al., 2017): token embeddings
//! scaled by sqrt(d_model) plus sinusoidal positions, post-norm encoder and decoder layers
//! (self-attention with the source padding mask; causal self-attention; cross-attention with the
//! source padding mask; ReLU feed-forward), an output projection to the vocabulary and
//! label-smoothed cross-entropy that skips padding. Parameters carry the state_dict names of a
//! `torch.nn.Transformer` wrapped with `src_embed`, `tgt_embed` and `generator`.

pub use super::transformer_config::{positional_encoding, positional_halves, TransformerConfig};
use crate::error::{Error, Result};
use crate::graph::{AttentionPolicy, Dtype, Graph, TensorId};

/// A Transformer training (or scoring) graph for a batch of padded sequence pairs.
pub struct TransformerGraph {
    pub graph: Graph,
    /// (B, S) u32 source ids, padded with pad_id after each sentence.
    pub src: TensorId,
    /// (B) u32 source lengths: keys at or past them are masked.
    pub src_lens: TensorId,
    /// (B, T) u32 decoder input ids (bos, y1, ..).
    pub tgt_in: TensorId,
    /// (B, T) u32 targets (y1, .., eos, pad..).
    pub tgt_out: TensorId,
    /// (S, d) and (T, d) positional encodings: inputs set once (see [`TransformerGraph::constants`]).
    pub src_pe: TensorId,
    pub tgt_pe: TensorId,
    /// (B, T, vocab).
    pub logits: TensorId,
    /// The configuration it was built from (its positional encoding, for `constants`).
    pub config: TransformerConfig,
    /// Mean smoothed cross-entropy over non-pad targets, `[1]`.
    pub loss: TensorId,
}

impl TransformerGraph {
    /// The inputs that never change for this shape (the positional encodings) and their values.
    pub fn constants(&self) -> Vec<(TensorId, Vec<f32>)> {
        [self.src_pe, self.tgt_pe]
            .into_iter()
            .map(|t| {
                let s = self.graph.shape(t);
                (t, self.config.positional_table(s[0]))
            })
            .collect()
    }
}

/// Names of a layer's parameters and how a graph uses them.
pub(crate) struct Layers<'a> {
    pub cfg: &'a TransformerConfig,
    /// Dropout probability in force (0 when not training).
    pub drop: f32,
}

impl Layers<'_> {
    fn linear(&self, g: &mut Graph, x: TensorId, name: &str, out: usize, inp: usize) -> Result<TensorId> {
        let w = g.param(&format!("{name}.weight"), &[out, inp]);
        let b = g.param(&format!("{name}.bias"), &[out]);
        g.linear(x, w, Some(b))
    }

    /// The q, k or v projection (`which` 0, 1, 2) of nn.MultiheadAttention's packed in_proj.
    pub fn in_proj(&self, g: &mut Graph, x: TensorId, name: &str, which: usize) -> Result<TensorId> {
        let c = self.cfg.d_model;
        let w = param_or_new(g, &format!("{name}.in_proj_weight"), &[3 * c, c]);
        let b = param_or_new(g, &format!("{name}.in_proj_bias"), &[3 * c]);
        let w = g.slice(w, 0, which * c, c)?;
        let b = g.slice(b, 0, which * c, c)?;
        g.linear(x, w, Some(b))
    }

    /// out_proj of an attention block.
    pub fn out_proj(&self, g: &mut Graph, a: TensorId, name: &str) -> Result<TensorId> {
        let c = self.cfg.d_model;
        self.linear(g, a, &format!("{name}.out_proj"), c, c)
    }

    /// Multi-head attention of queries from `xq` over keys and values from `xkv`.
    fn attention(
        &self,
        g: &mut Graph,
        xq: TensorId,
        xkv: TensorId,
        name: &str,
        key_lens: Option<TensorId>,
        causal: bool,
    ) -> Result<TensorId> {
        let q = self.in_proj(g, xq, name, 0)?;
        let k = self.in_proj(g, xkv, name, 1)?;
        let v = self.in_proj(g, xkv, name, 2)?;
        let a = g.attention(q, k, v, self.cfg.num_heads, key_lens, causal, 0.0)?;
        self.out_proj(g, a, name)
    }

    /// x = LN(x + dropout(sublayer)).
    pub fn residual_norm(&self, g: &mut Graph, x: TensorId, sub: TensorId, norm: &str) -> Result<TensorId> {
        let sub = g.dropout(sub, self.drop)?;
        let x = g.add(x, sub)?;
        self.layernorm(g, x, norm)
    }

    pub fn layernorm(&self, g: &mut Graph, x: TensorId, name: &str) -> Result<TensorId> {
        let c = self.cfg.d_model;
        let w = g.param(&format!("{name}.weight"), &[c]);
        let b = g.param(&format!("{name}.bias"), &[c]);
        g.layernorm(x, w, b, self.cfg.layer_norm_eps as f32)
    }

    /// linear2(dropout(act(linear1(x)))), act the config's activation (ReLU in the paper).
    pub fn feed_forward(&self, g: &mut Graph, x: TensorId, layer: &str) -> Result<TensorId> {
        let (c, f) = (self.cfg.d_model, self.cfg.d_ff);
        let h = self.linear(g, x, &format!("{layer}.linear1"), f, c)?;
        let h = match self.cfg.activation.as_str() {
            "silu" => g.silu(h)?,
            "gelu" => g.gelu(h, crate::graph::GeluKind::Exact)?,
            _ => g.relu(h)?,
        };
        let h = g.dropout(h, self.drop)?;
        self.linear(g, h, &format!("{layer}.linear2"), c, f)
    }

    /// E[ids] * sqrt(d) (or E[ids], as the config says) + PE, then dropout.
    pub fn embed(&self, g: &mut Graph, table: TensorId, ids: TensorId, pe: TensorId) -> Result<TensorId> {
        let padding = self.cfg.embedding_padding.then_some(self.cfg.pad_id);
        let mut x = g.embedding_padded(table, ids, padding)?;
        if self.cfg.embedding_scale == "sqrt_d_model" {
            x = g.scale(x, (self.cfg.d_model as f32).sqrt())?;
        }
        let x = g.add(x, pe)?;
        g.dropout(x, self.drop)
    }

    /// The embedding tables (source, target) and the output projection weight.
    pub fn embeddings(&self, g: &mut Graph) -> (TensorId, TensorId, TensorId) {
        let (v, c) = (self.cfg.vocab_size, self.cfg.d_model);
        if self.cfg.tie_embeddings {
            let e = param_or_new(g, "tgt_embed.weight", &[v, c]);
            (e, e, e)
        } else {
            let src = param_or_new(g, "src_embed.weight", &[v, c]);
            let tgt = param_or_new(g, "tgt_embed.weight", &[v, c]);
            (src, tgt, param_or_new(g, "generator.weight", &[v, c]))
        }
    }

    /// The encoder over embedded sources `x`: memory (B, S, d).
    pub fn encoder(&self, g: &mut Graph, mut x: TensorId, src_lens: TensorId) -> Result<TensorId> {
        let c = self.cfg.d_model;
        for i in 0..self.cfg.encoder_layers {
            let l = format!("transformer.encoder.layers.{i}");
            let a = self.attention(g, x, x, &format!("{l}.self_attn"), Some(src_lens), false)?;
            x = self.residual_norm(g, x, a, &format!("{l}.norm1"))?;
            let f = self.feed_forward(g, x, &l)?;
            x = self.residual_norm(g, x, f, &format!("{l}.norm2"))?;
        }
        debug_assert_eq!(g.shape(x)[2], c);
        if self.cfg.final_norm {
            x = self.layernorm(g, x, "transformer.encoder.norm")?;
        }
        Ok(x)
    }

    /// The decoder over embedded targets `y` attending to `memory`: (B, T, d) before the generator.
    pub fn decoder(&self, g: &mut Graph, mut y: TensorId, memory: TensorId, src_lens: TensorId) -> Result<TensorId> {
        for i in 0..self.cfg.decoder_layers {
            let l = format!("transformer.decoder.layers.{i}");
            let a = self.attention(g, y, y, &format!("{l}.self_attn"), None, true)?;
            y = self.residual_norm(g, y, a, &format!("{l}.norm1"))?;
            let a = self.attention(g, y, memory, &format!("{l}.multihead_attn"), Some(src_lens), false)?;
            y = self.residual_norm(g, y, a, &format!("{l}.norm2"))?;
            let f = self.feed_forward(g, y, &l)?;
            y = self.residual_norm(g, y, f, &format!("{l}.norm3"))?;
        }
        if self.cfg.final_norm {
            y = self.layernorm(g, y, "transformer.decoder.norm")?;
        }
        Ok(y)
    }

    /// Logits over the vocabulary from decoder outputs.
    pub fn generator(&self, g: &mut Graph, y: TensorId, weight: TensorId) -> Result<TensorId> {
        let b = g.param("generator.bias", &[self.cfg.vocab_size]);
        g.linear(y, weight, Some(b))
    }
}

/// The parameter `name`, created on first use (a tied or packed weight is used several times).
fn param_or_new(g: &mut Graph, name: &str, shape: &[usize]) -> TensorId {
    match g.find(name) {
        Some(t) if g.desc(t).role == crate::graph::Role::Param => t,
        _ => g.param(name, shape),
    }
}

/// Builds the training graph for `batch` pairs of source length `src_len` and target length
/// `tgt_len`; `train` enables dropout.
pub fn build(
    cfg: &TransformerConfig,
    batch: usize,
    src_len: usize,
    tgt_len: usize,
    train: bool,
) -> Result<TransformerGraph> {
    build_with(cfg, batch, src_len, tgt_len, train, AttentionPolicy::Fused)
}

/// [`build`], with attention built as `attention` says (`kernels::attention::policy(gpu)` for
/// the adapter that will run it).
pub fn build_with(
    cfg: &TransformerConfig,
    batch: usize,
    src_len: usize,
    tgt_len: usize,
    train: bool,
    attention: AttentionPolicy,
) -> Result<TransformerGraph> {
    cfg.validate()?;
    if batch == 0 || src_len == 0 || tgt_len == 0 {
        return Err(Error::Config(format!("batch {batch}, source {src_len} and target {tgt_len} must be positive")));
    }
    let layers = Layers { cfg, drop: if train { cfg.dropout } else { 0.0 } };
    let c = cfg.d_model;
    let mut g = Graph::with_attention(attention);
    let src = g.input("src", &[batch, src_len], Dtype::U32);
    let src_lens = g.input("src_lens", &[batch], Dtype::U32);
    let tgt_in = g.input("tgt_in", &[batch, tgt_len], Dtype::U32);
    let tgt_out = g.input("tgt_out", &[batch, tgt_len], Dtype::U32);
    let src_pe = g.input("src_pe", &[src_len, c], Dtype::F32);
    let tgt_pe = g.input("tgt_pe", &[tgt_len, c], Dtype::F32);
    let (src_table, tgt_table, out_weight) = layers.embeddings(&mut g);
    let x = layers.embed(&mut g, src_table, src, src_pe)?;
    let memory = layers.encoder(&mut g, x, src_lens)?;
    let y = layers.embed(&mut g, tgt_table, tgt_in, tgt_pe)?;
    let y = layers.decoder(&mut g, y, memory, src_lens)?;
    let logits = layers.generator(&mut g, y, out_weight)?;
    let loss = g.cross_entropy(logits, tgt_out, cfg.label_smoothing, Some(cfg.pad_id))?;
    let config = cfg.clone();
    Ok(TransformerGraph { graph: g, src, src_lens, tgt_in, tgt_out, src_pe, tgt_pe, logits, config, loss })
}

/// Initial values: embedding tables normal with standard deviation d_model^-1/2 (so that
/// rows scaled by sqrt(d_model) have unit scale, as fairseq and tensor2tensor start them),
/// Xavier-uniform for every other matrix as nn.Transformer does, zero biases, LayerNorm
/// weights 1. Xavier-uniform on a (vocabulary x d_model) table starts tokens at a quarter of
/// the positional encoding's scale; on the bundled pairs the normal start reached the same
/// validation loss in about 60% of the epochs (PyTorch twin, benches/translate_reference.py).
pub fn init_params(g: &Graph, seed: u64) -> Vec<(TensorId, Vec<f32>)> {
    let mut rng = crate::util::rng::Rng::new(seed);
    g.params()
        .into_iter()
        .map(|p| {
            let d = g.desc(p);
            let values = match d.shape[..] {
                [_, width] if d.name.ends_with("_embed.weight") => {
                    let std = (width as f64).powf(-0.5);
                    (0..d.len()).map(|_| (rng.normal() * std) as f32).collect()
                }
                [out, inp] => {
                    let bound = (6.0 / (out + inp) as f64).sqrt() as f32;
                    (0..d.len()).map(|_| (rng.uniform() * 2.0 - 1.0) as f32 * bound).collect()
                }
                _ if d.name.contains("norm") && d.name.ends_with(".weight") => vec![1.0; d.len()],
                _ => vec![0.0; d.len()],
            };
            (p, values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_model_has_the_papers_parameter_count() {
        // The paper's Table 3 lists 65M parameters for the base model with a 37000-token vocabulary.
        let t = build(&TransformerConfig::base(37000), 1, 4, 4, false).expect("builds");
        let count: usize = t.graph.params().iter().map(|&p| t.graph.desc(p).len()).sum();
        assert!((60_000_000..66_000_000).contains(&count), "{count}");
    }

    #[test]
    fn positional_encoding_matches_the_formula() {
        let pe = positional_encoding(5, 8);
        assert_eq!(pe[0..2], [0.0, 1.0]);
        let want = (3.0f64 / 10000f64.powf(4.0 / 8.0)).cos() as f32;
        assert!((pe[3 * 8 + 5] - want).abs() < 1e-7);
    }

    #[test]
    fn embeddings_start_at_unit_scale_after_sqrt_d() {
        let mut cfg = TransformerConfig::small(1000);
        cfg.tie_embeddings = false;
        let t = build(&cfg, 1, 4, 4, false).expect("builds");
        let std = |v: &[f32]| (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        for (p, values) in init_params(&t.graph, 1) {
            let d = t.graph.desc(p);
            let got = std(&values);
            let want = match d.shape[..] {
                [_, c] if d.name.ends_with("_embed.weight") => 1.0 / (c as f64).sqrt(),
                [o, i] => (2.0 / (o + i) as f64).sqrt(),
                _ => continue,
            };
            assert!((got / want - 1.0).abs() < 0.05, "{}: std {got}, want {want}", d.name);
        }
    }

    #[test]
    fn marians_positional_table_puts_sines_then_cosines() {
        let (d, pe) = (8, positional_halves(3, 8));
        for pos in 0..3 {
            for i in 0..d / 2 {
                let angle = pos as f64 / 10000f64.powf((2 * i) as f64 / d as f64);
                assert!((pe[pos * d + i] as f64 - angle.sin()).abs() < 1e-6);
                assert!((pe[pos * d + d / 2 + i] as f64 - angle.cos()).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut cfg = TransformerConfig::small(100);
        cfg.num_heads = 3;
        assert!(cfg.validate().is_err());
        let mut cfg = TransformerConfig::small(100);
        cfg.activation = "tanh".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("activation"));
        let mut cfg = TransformerConfig::small(100);
        cfg.positional_encoding = "learned".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("positional_encoding"));
        assert!(build(&TransformerConfig::small(100), 0, 3, 3, false).is_err());
    }
}
