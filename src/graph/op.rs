//! The closed set of graph operations, forward and backward as explicit variants, and the
//! position of each input and output. Shape rules live in `build.rs`, the only place that
//! creates nodes.

use super::chain::Chain;
use super::params::{Activation, GeluKind, ProductDropout};

/// One operation. Tensors are referenced by the node's `inputs` / `outputs`, in the order
/// each variant documents.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// inputs `[a, b, bias?]` -> `[c]`. c = op(a) op(b) (+ bias). Unbatched: a and b are viewed as
    /// matrices by folding all leading dimensions into rows. Batched: a and b are (.., r, c) with
    /// the same leading dimensions, which index independent products.
    MatMul { trans_a: bool, trans_b: bool, bias: bool, batched: bool },
    /// inputs [a, b] -> [a + b]. b has a's shape, or a's trailing dimensions (repeated over
    /// the leading ones, e.g. a position embedding over the batch).
    Add,
    /// inputs [a, b] -> [a * b] (same shapes).
    Mul,
    /// inputs [a, b, dout] -> [da, db].
    MulBwd,
    /// inputs `[a]` -> `[alpha * a]`.
    Scale { alpha: f32 },
    /// inputs [x, gamma, beta] -> [y, mean, rstd], normalising the last dimension.
    LayerNorm { eps: f32 },
    /// inputs [x, dy, mean, rstd, gamma] -> [dx, dgamma, dbeta].
    LayerNormBwd,
    /// inputs `[x]` -> `[gelu(x)]`.
    Gelu { kind: GeluKind },
    /// inputs `[x, dy]` -> `[dx]`.
    GeluBwd { kind: GeluKind },
    /// inputs `[x]` -> `[max(x, 0)]`.
    Relu,
    /// inputs `[x, dy]` -> `[dx]`.
    ReluBwd,
    /// inputs `[x]` -> `[x sigmoid(x)]` (SiLU, or swish).
    Silu,
    /// inputs `[x, dy]` -> `[dx]`.
    SiluBwd,
    /// inputs `[x]` -> `[softmax over the last dimension]`.
    Softmax,
    /// inputs `[y, dy]` -> `[dx]`.
    SoftmaxBwd,
    /// inputs `[x]` -> `[y]`: x viewed as (rows, y.len()) summed over rows; y's shape is set by the
    /// builder (the trailing dimensions of x, or those with leading 1s).
    SumRows,
    /// inputs `[dout]` -> `[dx]`: the gradient of SumRows, dout repeated over the rows.
    SumRowsBwd,
    /// inputs [x (B, T, H*D)] -> [(B, H, T, D)].
    SplitHeads { heads: usize },
    /// inputs [x (B, H, T, D)] -> [(B, T, H*D)].
    MergeHeads,
    /// inputs [a (Ba, T1, C), b (B, T2, C)] -> [(B, T1 + T2, C)], along tokens; Ba is B or 1
    /// (a broadcast class token).
    Concat,
    /// inputs [x (B, T, C)] -> [(B, len, C)]: tokens start..start + len.
    Slice { dim: usize, start: usize, len: usize },
    /// inputs [dy (B, len, C)] -> [dx (B, total, C)]: dy at tokens start.., zeros elsewhere.
    SliceBwd { dim: usize, start: usize, total: usize },
    /// inputs `[x]` -> `[y]`: inverted dropout with drop probability p; `salt` tells nodes apart.
    Dropout { p: f32, salt: u32 },
    /// inputs `[dy]` -> `[dx]`: the same mask (same step seed and salt) applied to dy.
    DropoutBwd { p: f32, salt: u32 },
    /// inputs [table (V, C), ids (..) u32 input] -> [(.., C)]. The row `padding` (as
    /// nn.Embedding's `padding_idx`) is read like any other but gets no gradient.
    Embedding { padding: Option<u32> },
    /// inputs [ids, dout (.., C)] -> [dtable (V, C)], deterministic (see embedding.wgsl); the
    /// `padding` row stays zero.
    EmbeddingBwd { padding: Option<u32> },
    /// inputs [image (B, C, H, W)] -> [patches (B, N, C*P*P)], N = (H/P)(W/P), row-major patches.
    Patchify { patch: usize },
    /// inputs `[dpatches]` -> `[dimage (B, C, H, W)]`.
    PatchifyBwd { patch: usize },
    /// inputs [q (B, Tq, C), k (B, Tk, C), v (B, Tk, C), key_lens (B) u32?] -> [o (B, Tq, C),
    /// lse (B, H, Tq)]: fused multi-head attention, heads taking C in slices of C / heads.
    Attention { heads: usize, causal: bool },
    /// inputs [q, k, v, o, do, lse, key_lens?] -> [dq, dk, dv, delta (B, H, Tq)].
    AttentionBwd { heads: usize, causal: bool },
    /// inputs [scores (B, H, Tq, Tk), key_lens (B) u32?] -> [masked scores].
    Mask { causal: bool },
    /// inputs `[dy, key_lens?]` -> `[dx]`: dy with masked entries zeroed.
    MaskBwd { causal: bool },
    /// inputs [logits (.., V), targets (..) u32] -> [loss (1), dlogits (.., V)]: the mean
    /// label-smoothed cross-entropy over targets != ignore_index, and its gradient, fused.
    CrossEntropy { smoothing: f32, ignore_index: Option<u32> },
    /// inputs `[x]` -> `[x rounded to f16]`: an f16 tensor, or an f32 tensor of f16 values where
    /// the device multiplies rounded f32 operands. Inserted after differentiation by
    /// [`crate::graph::Graph::cast_products_to_f16`]; it has no gradient rule.
    CastF16,
    /// inputs `[a, b, bias?, acc]` -> `[c]`: acc + op(a) op(b) (+ bias), as MatMul, written over
    /// acc in place (the planner gives c acc's buffer). Made from a MatMul and the Add of its
    /// product by [`crate::graph::fuse`] after differentiation; it has no gradient rule.
    MatMulAcc { trans_a: bool, trans_b: bool, bias: bool, batched: bool },
    /// inputs `[a, b, bias?, residual]` -> `[residual + drop(op(a) op(b) (+ bias))]`, as MatMul,
    /// into a new tensor: a residual connection's Add (and the dropout before it, where `drop`
    /// says) fused into the product that feeds it (the residual is read again later, so it is
    /// not written over). Made by [`crate::graph::fuse`]; it has no gradient rule.
    MatMulResidual { trans_a: bool, trans_b: bool, bias: bool, batched: bool, drop: Option<ProductDropout> },
    /// inputs `[a, b]` -> `[op(a) op(b), the row sums of op(a) (M)]`, unbatched: a linear
    /// layer's weight gradient dY^T X and its bias gradient (dY's column sums, SumRows) in one
    /// dispatch. Made by [`crate::graph::fuse`]; it has no gradient rule.
    MatMulRowSums { trans_a: bool, trans_b: bool },
    /// inputs `[a, b, bias?]` -> `[c = op(a) op(b) (+ bias), drop(act(c))]`: a product and the
    /// activation it feeds (and the dropout after it, where `drop` says), whose backward reads
    /// c. Made by [`crate::graph::fuse`]; it has no gradient rule.
    MatMulAct { trans_a: bool, trans_b: bool, bias: bool, batched: bool, act: Activation, drop: Option<ProductDropout> },
    /// inputs `[a, b, x]` -> `[drop(op(a) op(b)) act'(x)]`: an activation's backward (x its
    /// input), and the dropout's backward before it where `drop` says, fused into the product
    /// that makes its incoming gradient. Made by [`crate::graph::fuse`]; it has no gradient rule.
    MatMulActGrad { trans_a: bool, trans_b: bool, batched: bool, act: Activation, drop: Option<ProductDropout> },
    /// inputs [part (.., len, ..), acc (.., total, ..)] -> [acc with part at `start..start + len`
    /// along `dim`], written over acc in place, whose range there was zero. Made from an Add
    /// of slices' gradients by [`crate::graph::fuse`]; it has no gradient rule.
    SliceInto { dim: usize, start: usize },
    /// inputs [x, dy, mean, rstd, gamma, acc] -> [acc + dx, dgamma, dbeta]: LayerNormBwd with
    /// dx added into acc in place. Made by [`crate::graph::fuse`]; it has no gradient rule.
    LayerNormBwdAcc,
    /// inputs `[x0, ..]` -> `[y0, ..]`: a chain of elementwise ops over tensors of one element
    /// count in one kernel, the values between them kept in registers (see
    /// [`crate::graph::chain`]). Made by [`crate::graph::fuse`]; it has no gradient rule.
    Elementwise(Box<Chain>),
}

impl Op {
    /// (input, output) of an op that writes its output over that input, in the same buffer.
    pub fn in_place(&self, inputs: usize) -> Option<(usize, usize)> {
        match self {
            Op::MatMulAcc { .. } | Op::SliceInto { .. } | Op::LayerNormBwdAcc => Some((inputs - 1, 0)),
            _ => None,
        }
    }

    /// (trans_a, trans_b, bias, batched) of the ops that compute a product: MatMul and its
    /// fused forms.
    pub fn product(&self) -> Option<(bool, bool, bool, bool)> {
        match *self {
            Op::MatMul { trans_a, trans_b, bias, batched }
            | Op::MatMulAcc { trans_a, trans_b, bias, batched }
            | Op::MatMulResidual { trans_a, trans_b, bias, batched, .. }
            | Op::MatMulAct { trans_a, trans_b, bias, batched, .. } => Some((trans_a, trans_b, bias, batched)),
            Op::MatMulActGrad { trans_a, trans_b, batched, .. } => Some((trans_a, trans_b, false, batched)),
            Op::MatMulRowSums { trans_a, trans_b } => Some((trans_a, trans_b, false, false)),
            _ => None,
        }
    }

    /// The dropout a fused product applies in its store, if any.
    pub fn product_dropout(&self) -> Option<ProductDropout> {
        match *self {
            Op::MatMulResidual { drop, .. } | Op::MatMulAct { drop, .. } | Op::MatMulActGrad { drop, .. } => drop,
            _ => None,
        }
    }

    /// GPU dispatches the executor records for this op.
    pub fn dispatches(&self) -> usize {
        match self {
            Op::CrossEntropy { .. } | Op::AttentionBwd { .. } => 3,
            Op::LayerNormBwd | Op::LayerNormBwdAcc | Op::Concat | Op::SliceBwd { .. } => 2,
            _ => 1,
        }
    }

    /// A short name for messages and `plan` output.
    pub fn name(&self) -> &'static str {
        match self {
            Op::MatMul { .. } => "matmul",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::MulBwd => "mul_bwd",
            Op::Scale { .. } => "scale",
            Op::LayerNorm { .. } => "layernorm",
            Op::LayerNormBwd => "layernorm_bwd",
            Op::Gelu { .. } => "gelu",
            Op::GeluBwd { .. } => "gelu_bwd",
            Op::Relu => "relu",
            Op::ReluBwd => "relu_bwd",
            Op::Silu => "silu",
            Op::SiluBwd => "silu_bwd",
            Op::Softmax => "softmax",
            Op::SoftmaxBwd => "softmax_bwd",
            Op::SumRows => "sum_rows",
            Op::SumRowsBwd => "sum_rows_bwd",
            Op::SplitHeads { .. } => "split_heads",
            Op::MergeHeads => "merge_heads",
            Op::Concat => "concat",
            Op::Slice { .. } => "slice",
            Op::SliceBwd { .. } => "slice_bwd",
            Op::Dropout { .. } => "dropout",
            Op::DropoutBwd { .. } => "dropout_bwd",
            Op::Embedding { .. } => "embedding",
            Op::EmbeddingBwd { .. } => "embedding_bwd",
            Op::Attention { .. } => "attention",
            Op::AttentionBwd { .. } => "attention_bwd",
            Op::Patchify { .. } => "patchify",
            Op::PatchifyBwd { .. } => "patchify_bwd",
            Op::Mask { .. } => "mask",
            Op::MaskBwd { .. } => "mask_bwd",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::CastF16 => "cast_f16",
            Op::MatMulAcc { .. } => "matmul_acc",
            Op::MatMulResidual { .. } => "matmul_residual",
            Op::MatMulRowSums { .. } => "matmul_row_sums",
            Op::MatMulAct { .. } => "matmul_act",
            Op::MatMulActGrad { .. } => "matmul_act_grad",
            Op::SliceInto { .. } => "slice_into",
            Op::LayerNormBwdAcc => "layernorm_bwd_acc",
            Op::Elementwise(_) => "elementwise_chain",
        }
    }
}
