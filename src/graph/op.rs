//! The closed set of graph operations, forward and backward as explicit variants, and the
//! position of each input and output. Shape rules live in `build.rs`, the only place that
//! creates nodes.

use crate::kernels::GeluKind;

/// One operation. Tensors are referenced by the node's `inputs` / `outputs`, in the order
/// each variant documents.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// inputs [a, b, bias?] -> [c]. c = op(a) op(b) (+ bias). Unbatched: a and b are viewed as
    /// matrices by folding all leading dimensions into rows. Batched: a, b, c are (batch, r, c).
    MatMul { trans_a: bool, trans_b: bool, bias: bool, batched: bool },
    /// inputs [a, b] -> [a + b] (same shapes).
    Add,
    /// inputs [a, b] -> [a * b] (same shapes).
    Mul,
    /// inputs [a, b, dout] -> [da, db].
    MulBwd,
    /// inputs [a] -> [alpha * a].
    Scale { alpha: f32 },
    /// inputs [x, gamma, beta] -> [y, mean, rstd], normalising the last dimension.
    LayerNorm { eps: f32 },
    /// inputs [x, dy, mean, rstd, gamma] -> [dx, dgamma, dbeta].
    LayerNormBwd,
    /// inputs [x] -> [gelu(x)].
    Gelu { kind: GeluKind },
    /// inputs [x, dy] -> [dx].
    GeluBwd { kind: GeluKind },
    /// inputs [x] -> [max(x, 0)].
    Relu,
    /// inputs [x, dy] -> [dx].
    ReluBwd,
    /// inputs [x] -> [softmax over the last dimension].
    Softmax,
    /// inputs [y, dy] -> [dx].
    SoftmaxBwd,
    /// inputs [x (.., C)] -> [sum over all leading dimensions (C)].
    SumRows,
    /// inputs [dout (C)] -> [dx (.., C)]: the gradient of SumRows, dout copied to every row.
    SumRowsBwd,
    /// inputs [logits (.., V), targets (..) u32] -> [loss (1), dlogits (.., V)]: the mean
    /// label-smoothed cross-entropy over targets != ignore_index, and its gradient, fused.
    CrossEntropy { smoothing: f32, ignore_index: Option<u32> },
}

impl Op {
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
            Op::Softmax => "softmax",
            Op::SoftmaxBwd => "softmax_bwd",
            Op::SumRows => "sum_rows",
            Op::SumRowsBwd => "sum_rows_bwd",
            Op::CrossEntropy { .. } => "cross_entropy",
        }
    }
}
