//! Graph builder methods: each checks shapes and types and returns `Err` naming the op, the
//! tensors and their shapes, so a bad model config fails at build time, not on the GPU.

use super::params::{GeluKind, MatmulShape};
use super::{Dtype, Graph, Op, Role, TensorId};
use crate::error::{Error, Result};

/// The product dimensions of a MatMul: (batch, M, N, K) and the output shape.
pub(crate) struct MatmulDims {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub out: Vec<usize>,
}

impl Graph {
    /// (batch, M, N, K) of a MatMul node (`None` for other ops).
    pub fn matmul_product(&self, node: &super::Node) -> Option<[usize; 4]> {
        let (trans_a, trans_b, _, batched) = node.op.product()?;
        let d = matmul_dims(self.shape(node.inputs[0]), self.shape(node.inputs[1]), trans_a, trans_b, batched).ok()?;
        Some([d.batch, d.m, d.n, d.k])
    }

    /// The product a MatMul node, or one of its fused forms, computes, with what it fuses:
    /// MatMulAcc accumulates into its output (which shares the accumulator's buffer, the
    /// plan), MatMulResidual adds its last input, MatMulRowSums writes op(A)'s row sums too,
    /// MatMulAct and MatMulActGrad apply an activation, and the fused forms a dropout.
    pub fn product_shape(&self, node: &super::Node) -> Option<MatmulShape> {
        let [batch, m, n, k] = self.matmul_product(node)?;
        let (trans_a, trans_b, bias, _) = node.op.product()?;
        let activation = match node.op {
            Op::MatMulAct { act, .. } | Op::MatMulActGrad { act, .. } => Some(act),
            _ => None,
        };
        Some(MatmulShape {
            bias,
            accumulate: matches!(node.op, Op::MatMulAcc { .. }),
            residual: matches!(node.op, Op::MatMulResidual { .. }),
            row_sums: matches!(node.op, Op::MatMulRowSums { .. }),
            activation,
            activation_grad: matches!(node.op, Op::MatMulActGrad { .. }),
            dropout: node.op.product_dropout(),
            ..MatmulShape::packed(batch, m, n, k, trans_a, trans_b)
        })
    }
}

/// (leading dimensions, rows, cols) of a batched operand of rank 3 or more.
fn split_batch(s: &[usize]) -> Option<(&[usize], usize, usize)> {
    (s.len() >= 3).then(|| (&s[..s.len() - 2], s[s.len() - 2], s[s.len() - 1]))
}

/// Applies the MatMul shape rule (see `Op::MatMul`).
pub(crate) fn matmul_dims(
    a: &[usize],
    b: &[usize],
    trans_a: bool,
    trans_b: bool,
    batched: bool,
) -> std::result::Result<MatmulDims, String> {
    let as_matrix = |s: &[usize]| -> std::result::Result<(usize, usize), String> {
        match s {
            [] | [_] => Err(format!("{s:?} is not a matrix")),
            [lead @ .., last] => Ok((lead.iter().product(), *last)),
        }
    };
    let (batch, (ar, ac), (br, bc)) = if batched {
        // (.., rows, cols) with equal leading dimensions, folded into one batch.
        match (split_batch(a), split_batch(b)) {
            (Some((la, ar, ac)), Some((lb, br, bc))) if la == lb => (la.iter().product(), (ar, ac), (br, bc)),
            _ => {
                return Err(format!(
                    "batched operands must be (.., rows, cols) with equal leading dimensions, got {a:?} and {b:?}"
                ))
            }
        }
    } else {
        (1, as_matrix(a)?, as_matrix(b)?)
    };
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(format!("inner dimensions differ: op(a) is {m}x{k} ({a:?}, trans {trans_a}), op(b) is {k2}x{n} ({b:?}, trans {trans_b})"));
    }
    let out = if batched {
        a[..a.len() - 2].iter().copied().chain([m, n]).collect()
    } else if trans_a {
        vec![m, n]
    } else {
        a[..a.len() - 1].iter().copied().chain([n]).collect()
    };
    Ok(MatmulDims { batch, m, n, k, out })
}

/// True when `small` equals the trailing dimensions of `big`, ignoring leading 1s of `small`.
fn trailing_match(big: &[usize], small: &[usize]) -> bool {
    let core: &[usize] = &small[small.iter().take_while(|&&d| d == 1).count()..];
    core.len() <= big.len() && big[big.len() - core.len()..] == *core && !small.is_empty()
}

impl Graph {
    pub(super) fn describe(&self, t: TensorId) -> String {
        let d = self.desc(t);
        format!("{} {:?}", d.name, d.shape)
    }

    pub(super) fn check_f32(&self, op: &'static str, ts: &[TensorId]) -> Result<()> {
        for &t in ts {
            if t.0 >= self.tensors.len() {
                return Err(Error::shape(op, format!("tensor id {} is not in this graph", t.0)));
            }
            if self.desc(t).dtype != Dtype::F32 {
                return Err(Error::shape(op, format!("{} must be f32", self.describe(t))));
            }
        }
        Ok(())
    }

    fn check_same(&self, op: &'static str, a: TensorId, b: TensorId) -> Result<()> {
        if self.shape(a) != self.shape(b) {
            return Err(Error::shape(op, format!("shapes differ: {} and {}", self.describe(a), self.describe(b))));
        }
        Ok(())
    }

    fn check_vector(&self, op: &'static str, v: TensorId, len: usize, of: TensorId) -> Result<()> {
        if self.shape(v) != [len] {
            return Err(Error::shape(
                op,
                format!("{} must have shape [{len}] to match {}", self.describe(v), self.describe(of)),
            ));
        }
        Ok(())
    }

    /// A per-step input (a batch) of the given shape.
    pub fn input(&mut self, name: &str, shape: &[usize], dtype: Dtype) -> TensorId {
        self.add_tensor(name.to_string(), shape.to_vec(), dtype, Role::Input)
    }

    /// A trained f32 parameter.
    pub fn param(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.add_tensor(name.to_string(), shape.to_vec(), Dtype::F32, Role::Param)
    }

    /// c = op(a) op(b) (+ `bias[n]`); see `Op::MatMul` for how shapes are read.
    pub fn matmul_full(
        &mut self,
        a: TensorId,
        b: TensorId,
        bias: Option<TensorId>,
        trans_a: bool,
        trans_b: bool,
        batched: bool,
    ) -> Result<TensorId> {
        self.check_f32("matmul", &[a, b])?;
        let dims = matmul_dims(self.shape(a), self.shape(b), trans_a, trans_b, batched)
            .map_err(|m| Error::shape("matmul", m))?;
        let mut inputs = vec![a, b];
        if let Some(bias) = bias {
            self.check_f32("matmul", &[bias])?;
            self.check_vector("matmul bias", bias, dims.n, b)?;
            inputs.push(bias);
        }
        let op = Op::MatMul { trans_a, trans_b, bias: bias.is_some(), batched };
        Ok(self.push(op, inputs, vec![(dims.out, Dtype::F32)])[0])
    }

    /// op(a) op(b), leading dimensions folded into rows.
    pub fn matmul(&mut self, a: TensorId, b: TensorId, trans_a: bool, trans_b: bool) -> Result<TensorId> {
        self.matmul_full(a, b, None, trans_a, trans_b, false)
    }

    /// A Linear layer as PyTorch stores it: x (.., in) @ weight (out, in)^T + bias (out).
    pub fn linear(&mut self, x: TensorId, weight: TensorId, bias: Option<TensorId>) -> Result<TensorId> {
        self.matmul_full(x, weight, bias, false, true, false)
    }

    fn binary(&mut self, op: Op, a: TensorId, b: TensorId) -> Result<TensorId> {
        let name = op.name();
        self.check_f32(name, &[a, b])?;
        self.check_same(name, a, b)?;
        let shape = self.shape(a).to_vec();
        Ok(self.push(op, vec![a, b], vec![(shape, Dtype::F32)])[0])
    }

    fn unary(&mut self, op: Op, x: TensorId) -> Result<TensorId> {
        self.check_f32(op.name(), &[x])?;
        let shape = self.shape(x).to_vec();
        Ok(self.push(op, vec![x], vec![(shape, Dtype::F32)])[0])
    }

    /// a + b; b may have a's trailing dimensions only (or with leading 1s), repeated over the rest.
    pub fn add(&mut self, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.check_f32("add", &[a, b])?;
        if !trailing_match(self.shape(a), self.shape(b)) {
            return Err(Error::shape(
                "add",
                format!("{} does not broadcast to {}", self.describe(b), self.describe(a)),
            ));
        }
        let shape = self.shape(a).to_vec();
        Ok(self.push(Op::Add, vec![a, b], vec![(shape, Dtype::F32)])[0])
    }

    /// a * b, elementwise.
    pub fn mul(&mut self, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.binary(Op::Mul, a, b)
    }

    /// alpha * a.
    pub fn scale(&mut self, a: TensorId, alpha: f32) -> Result<TensorId> {
        self.unary(Op::Scale { alpha }, a)
    }

    /// LayerNorm over the last dimension with affine gamma and beta; returns y.
    pub fn layernorm(&mut self, x: TensorId, gamma: TensorId, beta: TensorId, eps: f32) -> Result<TensorId> {
        self.check_f32("layernorm", &[x, gamma, beta])?;
        let d = self.desc(x);
        let (c, rows, shape) = (d.last_dim(), d.rows(), d.shape.clone());
        if shape.is_empty() || c == 0 {
            return Err(Error::shape("layernorm", format!("{} has no last dimension to normalise", self.describe(x))));
        }
        self.check_vector("layernorm gamma", gamma, c, x)?;
        self.check_vector("layernorm beta", beta, c, x)?;
        let outs = vec![(shape, Dtype::F32), (vec![rows], Dtype::F32), (vec![rows], Dtype::F32)];
        Ok(self.push(Op::LayerNorm { eps }, vec![x, gamma, beta], outs)[0])
    }

    /// GELU, exact or tanh-approximated.
    pub fn gelu(&mut self, x: TensorId, kind: GeluKind) -> Result<TensorId> {
        self.unary(Op::Gelu { kind }, x)
    }

    /// max(x, 0).
    pub fn relu(&mut self, x: TensorId) -> Result<TensorId> {
        self.unary(Op::Relu, x)
    }

    /// x sigmoid(x) (SiLU, or swish).
    pub fn silu(&mut self, x: TensorId) -> Result<TensorId> {
        self.unary(Op::Silu, x)
    }

    /// Softmax over the last dimension.
    pub fn softmax(&mut self, x: TensorId) -> Result<TensorId> {
        if self.shape(x).is_empty() {
            return Err(Error::shape("softmax", format!("{} is a scalar", self.describe(x))));
        }
        self.unary(Op::Softmax, x)
    }

    /// Sum over every dimension but the last: (.., C) -> (C).
    pub fn sum_rows(&mut self, x: TensorId) -> Result<TensorId> {
        let c = self.desc(x).last_dim();
        self.sum_to(x, &[c])
    }

    /// Mean over every dimension but the last: (.., C) -> (C).
    pub fn mean_rows(&mut self, x: TensorId) -> Result<TensorId> {
        let rows = self.desc(x).rows().max(1);
        let s = self.sum_rows(x)?;
        self.scale(s, 1.0 / rows as f32)
    }

    /// Sums x over its leading dimensions down to `shape`, which must be x's trailing
    /// dimensions (leading 1s allowed): the gradient of a broadcast.
    pub fn sum_to(&mut self, x: TensorId, shape: &[usize]) -> Result<TensorId> {
        self.check_f32("sum_rows", &[x])?;
        if !trailing_match(self.shape(x), shape) {
            return Err(Error::shape("sum_rows", format!("{} does not reduce to {shape:?}", self.describe(x))));
        }
        Ok(self.push(Op::SumRows, vec![x], vec![(shape.to_vec(), Dtype::F32)])[0])
    }

    /// (B, T, H*D) -> (B, H, T, D).
    pub fn split_heads(&mut self, x: TensorId, heads: usize) -> Result<TensorId> {
        self.check_f32("split_heads", &[x])?;
        match *self.shape(x) {
            [b, t, c] if heads > 0 && c % heads == 0 => {
                Ok(self.push(Op::SplitHeads { heads }, vec![x], vec![(vec![b, heads, t, c / heads], Dtype::F32)])[0])
            }
            _ => Err(Error::shape(
                "split_heads",
                format!("{} is not (B, T, C) with C divisible by {heads} heads", self.describe(x)),
            )),
        }
    }

    /// (B, H, T, D) -> (B, T, H*D).
    pub fn merge_heads(&mut self, x: TensorId) -> Result<TensorId> {
        self.check_f32("merge_heads", &[x])?;
        match *self.shape(x) {
            [b, h, t, d] => Ok(self.push(Op::MergeHeads, vec![x], vec![(vec![b, t, h * d], Dtype::F32)])[0]),
            _ => Err(Error::shape("merge_heads", format!("{} is not (B, H, T, D)", self.describe(x)))),
        }
    }

    /// Concatenates along tokens: a (B or 1, T1, C) and b (B, T2, C) -> (B, T1 + T2, C).
    pub fn concat_tokens(&mut self, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.check_f32("concat", &[a, b])?;
        match (self.shape(a), self.shape(b)) {
            (&[ba, t1, c1], &[bb, t2, c2]) if (ba == bb || ba == 1) && c1 == c2 => {
                Ok(self.push(Op::Concat, vec![a, b], vec![(vec![bb, t1 + t2, c1], Dtype::F32)])[0])
            }
            _ => Err(Error::shape(
                "concat",
                format!("cannot join {} and {} along tokens", self.describe(a), self.describe(b)),
            )),
        }
    }

    /// Tokens start..start + len of x (B, T, C).
    pub fn slice_tokens(&mut self, x: TensorId, start: usize, len: usize) -> Result<TensorId> {
        if self.shape(x).len() != 3 {
            return Err(Error::shape("slice", format!("{} is not (B, T, C)", self.describe(x))));
        }
        self.slice(x, 1, start, len)
    }

    /// Indices start..start + len of x along dimension `dim` (a parameter's rows, say).
    pub fn slice(&mut self, x: TensorId, dim: usize, start: usize, len: usize) -> Result<TensorId> {
        self.check_f32("slice", &[x])?;
        let mut shape = self.shape(x).to_vec();
        match shape.get(dim) {
            Some(&n) if start + len <= n && len > 0 => {
                shape[dim] = len;
                Ok(self.push(Op::Slice { dim, start, len }, vec![x], vec![(shape, Dtype::F32)])[0])
            }
            _ => Err(Error::shape("slice", format!("{start}..{} of dim {dim} of {}", start + len, self.describe(x)))),
        }
    }

    /// Inverted dropout with drop probability `p` (no node when p is 0). Each call gets its own
    /// random stream.
    pub fn dropout(&mut self, x: TensorId, p: f32) -> Result<TensorId> {
        super::params::dropout_constants(p)?;
        if p == 0.0 {
            return Ok(x);
        }
        let salt = self.nodes.iter().filter(|n| matches!(n.op, Op::Dropout { .. })).count() as u32;
        self.unary(Op::Dropout { p, salt: salt.wrapping_mul(0x9E37_79B9) }, x)
    }

    /// Rows of `table` (V, C) picked by `ids`, a u32 graph input: (..) -> (.., C).
    pub fn embedding(&mut self, table: TensorId, ids: TensorId) -> Result<TensorId> {
        self.embedding_padded(table, ids, None)
    }

    /// [`Graph::embedding`] whose row `padding` gets no gradient (nn.Embedding's
    /// `padding_idx`: the pad token's embedding stays as it is).
    pub fn embedding_padded(&mut self, table: TensorId, ids: TensorId, padding: Option<u32>) -> Result<TensorId> {
        self.check_f32("embedding", &[table])?;
        let d = self.desc(ids);
        if d.dtype != Dtype::U32 || d.role != Role::Input {
            return Err(Error::shape("embedding", format!("ids {} must be a u32 graph input", self.describe(ids))));
        }
        let [_, c] = *self.shape(table) else {
            return Err(Error::shape("embedding", format!("table {} is not (V, C)", self.describe(table))));
        };
        let shape = self.shape(ids).iter().copied().chain([c]).collect();
        Ok(self.push(Op::Embedding { padding }, vec![table, ids], vec![(shape, Dtype::F32)])[0])
    }

    /// Cuts images (B, C, H, W) into flattened P x P patches: (B, (H/P)(W/P), C*P*P).
    pub fn patchify(&mut self, image: TensorId, patch: usize) -> Result<TensorId> {
        self.check_f32("patchify", &[image])?;
        match *self.shape(image) {
            [b, c, h, w] if patch > 0 && h % patch == 0 && w % patch == 0 => {
                let shape = vec![b, (h / patch) * (w / patch), c * patch * patch];
                Ok(self.push(Op::Patchify { patch }, vec![image], vec![(shape, Dtype::F32)])[0])
            }
            _ => Err(Error::shape(
                "patchify",
                format!("{} is not (B, C, H, W) in whole {patch}x{patch} patches", self.describe(image)),
            )),
        }
    }

    /// Mean label-smoothed cross-entropy of `logits` (.., V) against u32 `targets` (..),
    /// skipping targets equal to `ignore_index`. Returns the loss, shape `[1]`.
    pub fn cross_entropy(
        &mut self,
        logits: TensorId,
        targets: TensorId,
        smoothing: f32,
        ignore_index: Option<u32>,
    ) -> Result<TensorId> {
        self.check_f32("cross_entropy", &[logits])?;
        if targets.0 >= self.tensors.len() || self.desc(targets).dtype != Dtype::U32 {
            return Err(Error::shape("cross_entropy", "targets must be a u32 tensor of this graph"));
        }
        let (ls, ts) = (self.shape(logits).to_vec(), self.shape(targets).to_vec());
        if ls.is_empty() || self.desc(logits).rows() != self.desc(targets).len() {
            return Err(Error::shape(
                "cross_entropy",
                format!("logits {ls:?} must hold one row of classes per target {ts:?}"),
            ));
        }
        if !(0.0..1.0).contains(&smoothing) {
            return Err(Error::shape("cross_entropy", format!("label smoothing {smoothing} must be in [0, 1)")));
        }
        let op = Op::CrossEntropy { smoothing, ignore_index };
        Ok(self.push(op, vec![logits, targets], vec![(vec![1], Dtype::F32), (ls, Dtype::F32)])[0])
    }

    /// Appends a backward node (autodiff only): outputs take the shapes of `like`.
    pub(crate) fn push_backward(&mut self, op: Op, inputs: Vec<TensorId>, like: &[TensorId]) -> Vec<TensorId> {
        let outs = like.iter().map(|&t| (self.shape(t).to_vec(), Dtype::F32)).collect();
        self.push(op, inputs, outs)
    }

    /// The node that produced `t`, if any (with its index).
    pub fn producer(&self, t: TensorId) -> Option<(usize, &super::Node)> {
        self.nodes.iter().enumerate().find(|(_, n)| n.outputs.contains(&t))
    }
}
