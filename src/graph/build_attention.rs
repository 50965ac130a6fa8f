//! Graph builders for attention: the score mask, multi-head attention (fused or composed, as the
//! graph's attention policy says) and the fused op itself. Shapes checked as in `build.rs`.

use super::{Dtype, Graph, Op, TensorId};
use crate::error::{Error, Result};

impl Graph {
    /// Masks attention scores (B, H, Tq, Tk): keys at or past `key_lens[b]` (a u32 (B) tensor)
    /// and, when `causal`, keys after the query's position.
    pub fn mask(&mut self, scores: TensorId, key_lens: Option<TensorId>, causal: bool) -> Result<TensorId> {
        self.check_f32("mask", &[scores])?;
        let [b, _, tq, tk] = *self.shape(scores) else {
            return Err(Error::shape("mask", format!("{} is not (B, H, Tq, Tk)", self.describe(scores))));
        };
        if causal && tq > tk {
            return Err(Error::shape("mask", format!("causal mask needs Tq <= Tk, got {tq} > {tk}")));
        }
        let mut inputs = vec![scores];
        if let Some(l) = key_lens {
            if self.desc(l).dtype != Dtype::U32 || self.shape(l) != [b] {
                return Err(Error::shape("mask", format!("key lengths {} must be u32 [{b}]", self.describe(l))));
            }
            inputs.push(l);
        }
        let shape = self.shape(scores).to_vec();
        Ok(self.push(Op::Mask { causal }, inputs, vec![(shape, Dtype::F32)])[0])
    }

    /// Multi-head scaled dot-product attention: q (B, Tq, C), k and v (B, Tk, C) already
    /// projected; returns (B, Tq, C) before the output projection. The fused op or the ops
    /// above, as the graph's [`AttentionPolicy`](super::AttentionPolicy) says; `dropout`
    /// (on the attention probabilities) always takes the composed path.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: TensorId,
        k: TensorId,
        v: TensorId,
        heads: usize,
        key_lens: Option<TensorId>,
        causal: bool,
        dropout: f32,
    ) -> Result<TensorId> {
        let c = self.shape(q).last().copied().unwrap_or(0);
        let (b, tq, tk) = match (self.shape(q), self.shape(k)) {
            (&[b, tq, _], &[_, tk, _]) => (b, tq, tk),
            _ => (0, 0, 0),
        };
        let fused = heads > 0 && c % heads == 0 && !(causal && tq > tk) && {
            let s = super::AttentionShape { batch: b, heads, tq, tk, head_dim: c / heads, causal };
            self.attention_policy.fused(&s, key_lens.is_some())
        };
        if fused && dropout == 0.0 {
            return self.fused_attention(q, k, v, heads, key_lens, causal);
        }
        let (qh, kh, vh) = (self.split_heads(q, heads)?, self.split_heads(k, heads)?, self.split_heads(v, heads)?);
        let d = self.shape(qh)[3];
        let scores = self.matmul_full(qh, kh, None, false, true, true)?;
        let scores = self.scale(scores, 1.0 / (d as f32).sqrt())?;
        let scores = if key_lens.is_some() || causal { self.mask(scores, key_lens, causal)? } else { scores };
        let p = self.softmax(scores)?;
        let p = self.dropout(p, dropout)?;
        let o = self.matmul_full(p, vh, None, false, false, true)?;
        self.merge_heads(o)
    }

    /// The fused attention op (kernels/attention.rs): same inputs and result as
    /// [`Graph::attention`] without dropout, no (Tq x Tk) tensor. A query that sees no key
    /// outputs 0 (the composed path gives it uniform weights).
    pub fn fused_attention(
        &mut self,
        q: TensorId,
        k: TensorId,
        v: TensorId,
        heads: usize,
        key_lens: Option<TensorId>,
        causal: bool,
    ) -> Result<TensorId> {
        self.check_f32("attention", &[q, k, v])?;
        let (&[b, tq, c], &[bk, tk, ck]) = (self.shape(q), self.shape(k)) else {
            return Err(Error::shape(
                "attention",
                format!("q {} and k {} must be (B, T, C)", self.describe(q), self.describe(k)),
            ));
        };
        if bk != b || ck != c || self.shape(v) != self.shape(k) || heads == 0 || c % heads != 0 {
            return Err(Error::shape(
                "attention",
                format!(
                    "q {}, k {}, v {} with {heads} heads do not fit",
                    self.describe(q),
                    self.describe(k),
                    self.describe(v)
                ),
            ));
        }
        if !super::params::ATTENTION_HEAD_DIMS.contains(&(c / heads)) || (causal && tq > tk) {
            return Err(Error::shape(
                "attention",
                format!("head dim {} (Tq {tq}, Tk {tk}, causal {causal}) has no fused kernel", c / heads),
            ));
        }
        let mut inputs = vec![q, k, v];
        if let Some(l) = key_lens {
            if self.desc(l).dtype != Dtype::U32 || self.shape(l) != [b] {
                return Err(Error::shape("attention", format!("key lengths {} must be u32 [{b}]", self.describe(l))));
            }
            inputs.push(l);
        }
        let outs = vec![(vec![b, tq, c], Dtype::F32), (vec![b, heads, tq], Dtype::F32)];
        Ok(self.push(Op::Attention { heads, causal }, inputs, outs)[0])
    }
}
