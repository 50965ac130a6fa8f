//! Lowering: the kernel dispatches of each op, prepared once when the executor is built.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::graph::{Dtype, F16Storage, Graph, Node, Op, Precision};
use crate::kernels::attention::AttentionShape;
use crate::kernels::layout::TokenCopy;
use crate::kernels::{Dispatch, F16Set, KernelSet, MatmulExtras};
use std::sync::Arc;

/// What some nodes need beyond their tensors.
pub(super) struct NodeContext<'a> {
    pub step_params: &'a wgpu::Buffer,
    /// (order, starts) of an embedding gradient.
    pub id_groups: Option<(&'a Tensor, &'a Tensor)>,
    /// What the cross-entropy's gradient is multiplied by (the loss scale).
    pub loss_scale: &'a Tensor,
    /// The f16 kernels, where the graph has casts (mixed precision).
    pub f16: Option<&'a F16Set>,
}

/// The graph to run and its f16 kernels: in mixed precision (`Graph::precision`) its products
/// read f16 copies of their operands (`Graph::cast_products_to_f16`), stored in f16 where the
/// device has the f16 matmul and as rounded f32 values where it multiplies those instead (CPU
/// adapters). An error naming the adapter where it has no f16 shaders.
pub(super) fn cast_products(gpu: &Gpu, mut g: Graph) -> Result<(Graph, Option<Arc<F16Set>>)> {
    let has_casts = g.nodes.iter().any(|n| n.op == Op::CastF16);
    if g.precision == Precision::F32 && !has_casts {
        return Ok((g, None));
    }
    let set = F16Set::of(gpu)?;
    if g.precision == Precision::F16 {
        let storage = if set.rounded { F16Storage::RoundedF32 } else { F16Storage::Half };
        let weights = gpu.settings.kernels.f16_weight_casts;
        g.cast_products_to_f16_with(storage, weights, &crate::kernels::f16_forms::HalfTable);
    }
    Ok((g, Some(set)))
}

/// A product node: the f16 kernel where mixed precision made its operands f16 (their casts are
/// nodes of their own), else the f32 one, in splits of K where its rule says (two dispatches).
fn encode_matmul(
    gpu: &Gpu,
    k: &KernelSet,
    g: &Graph,
    ts: &[Tensor],
    node: &Node,
    ctx: &NodeContext,
) -> Result<Vec<Dispatch>> {
    let (i, o) = (|n: usize| &ts[node.inputs[n].0], |n: usize| &ts[node.outputs[n].0]);
    let shape = g.product_shape(node).ok_or_else(|| Error::shape("matmul", "not a product of valid shapes"))?;
    let bias = shape.bias.then(|| i(2));
    let last = i(node.inputs.len() - 1);
    let act_fwd = shape.activation.is_some() && !shape.activation_grad;
    let extras = MatmulExtras {
        residual: shape.residual.then_some(last),
        row_sums: shape.row_sums.then(|| o(1)),
        activated: act_fwd.then(|| o(1)),
        pre_activation: shape.activation_grad.then_some(last),
        step: shape.dropout.map(|_| ctx.step_params),
    };
    match g.desc(node.inputs[0]).dtype {
        Dtype::F16 => {
            let set = ctx.f16.ok_or_else(|| Error::shape("matmul", "no f16 kernels were prepared"))?;
            Ok(vec![set.matmul(gpu)?.fwd_fused(gpu, o(0), i(0), i(1), bias, extras, &shape)?])
        }
        _ => k.matmul.fwd_split(gpu, o(0), i(0), i(1), bias, extras, &shape, None),
    }
}

/// A CastF16 node: into an f16 tensor, or rounded to f16 values kept in f32.
fn encode_cast(g: &Graph, ts: &[Tensor], node: &Node, ctx: &NodeContext, len: usize, gpu: &Gpu) -> Result<Dispatch> {
    let cast = &ctx.f16.ok_or_else(|| Error::shape("cast_f16", "no f16 kernels were prepared"))?.cast;
    let (x, out) = (&ts[node.inputs[0].0], &ts[node.outputs[0].0]);
    match g.desc(node.outputs[0]).dtype {
        Dtype::F16 => cast.to_f16(gpu, out, x, len),
        _ => cast.round_f16(gpu, out, x, len),
    }
}

/// `part` (.., len, ..) placed at `start` of a (.., total, ..) tensor along `dim`.
fn placed(part: &[usize], dim: usize, start: usize, total: usize) -> TokenCopy {
    let [batch, len, channels] = crate::graph::around(part, dim);
    TokenCopy {
        batch,
        channels,
        src_tokens: len,
        dst_tokens: total,
        src_off: 0,
        dst_off: start,
        len,
        src_broadcast: false,
    }
}

/// The ops that copy runs of tokens: Concat, Slice, SliceBwd and the fused SliceInto (in place:
/// its output's buffer is its accumulator's, the plan).
fn encode_token_copies(gpu: &Gpu, k: &KernelSet, g: &Graph, ts: &[Tensor], node: &Node) -> Result<Vec<Dispatch>> {
    let (i, o) = (|n: usize| &ts[node.inputs[n].0], &ts[node.outputs[0].0]);
    let in_shape = |n: usize| &g.desc(node.inputs[n]).shape;
    Ok(match node.op {
        Op::Concat => {
            let (a, b) = (tokens3(g.desc(node.inputs[0]))?, tokens3(g.desc(node.inputs[1]))?);
            let total = a[1] + b[1];
            let copy = |src: [usize; 3], dst_off| TokenCopy {
                batch: b[0],
                channels: b[2],
                src_tokens: src[1],
                dst_tokens: total,
                src_off: 0,
                dst_off,
                len: src[1],
                src_broadcast: src[0] == 1 && b[0] > 1,
            };
            vec![k.layout.copy_tokens(gpu, o, i(0), &copy(a, 0))?, k.layout.copy_tokens(gpu, o, i(1), &copy(b, a[1]))?]
        }
        Op::Slice { dim, start, len } => {
            // The inverse placement: from `start` of the input into the whole output.
            let p = placed(&g.desc(node.outputs[0]).shape, dim, start, in_shape(0)[dim]);
            let copy = TokenCopy { src_tokens: p.dst_tokens, dst_tokens: len, src_off: start, dst_off: 0, ..p };
            vec![k.layout.copy_tokens(gpu, o, i(0), &copy)?]
        }
        Op::SliceInto { dim, start } => {
            vec![k.layout.copy_tokens(gpu, o, i(0), &placed(in_shape(0), dim, start, in_shape(1)[dim]))?]
        }
        Op::SliceBwd { dim, start, total } => {
            let copy = placed(in_shape(0), dim, start, total);
            vec![
                k.layout.fill(gpu, o, 0.0, copy.batch * total * copy.channels)?,
                k.layout.copy_tokens(gpu, o, i(0), &copy)?,
            ]
        }
        _ => return Err(Error::shape(node.op.name(), "not a token copy")),
    })
}

/// The dispatches of one node.
pub(super) fn encode_node(
    gpu: &Gpu,
    k: &KernelSet,
    g: &Graph,
    ts: &[Tensor],
    node: &Node,
    ctx: &NodeContext,
) -> Result<Vec<Dispatch>> {
    let i = |n: usize| &ts[node.inputs[n].0];
    let o = |n: usize| &ts[node.outputs[n].0];
    let in_desc = |n: usize| g.desc(node.inputs[n]);
    let (len, rows, cols) = (in_desc(0).len(), in_desc(0).rows(), in_desc(0).last_dim());
    Ok(match node.op {
        Op::MatMul { .. }
        | Op::MatMulAcc { .. }
        | Op::MatMulResidual { .. }
        | Op::MatMulRowSums { .. }
        | Op::MatMulAct { .. }
        | Op::MatMulActGrad { .. } => encode_matmul(gpu, k, g, ts, node, ctx)?,
        Op::CastF16 => vec![encode_cast(g, ts, node, ctx, len, gpu)?],
        Op::Add if in_desc(1).len() == len => vec![k.elementwise.add_fwd(gpu, o(0), i(0), i(1), len)?],
        Op::Add => vec![k.elementwise.add_bcast_fwd(gpu, o(0), i(0), i(1), len, in_desc(1).len())?],
        Op::Mul => vec![k.elementwise.mul_fwd(gpu, o(0), i(0), i(1), len)?],
        Op::MulBwd => vec![k.elementwise.mul_bwd(gpu, o(0), o(1), i(2), i(0), i(1), len)?],
        Op::Scale { alpha } => vec![k.elementwise.scale_fwd(gpu, o(0), i(0), alpha, len)?],
        Op::LayerNorm { eps } => vec![k.layernorm.fwd(gpu, o(0), o(1), o(2), i(0), i(1), i(2), rows, cols, eps)?],
        Op::LayerNormBwd | Op::LayerNormBwdAcc => {
            // The accumulating form's dx buffer is its accumulator's (the plan).
            let acc = node.op == Op::LayerNormBwdAcc;
            k.layernorm.bwd_into(gpu, [o(0), o(1), o(2)], [i(0), i(1), i(2), i(3), i(4)], rows, cols, acc)?.to_vec()
        }
        Op::Gelu { kind } => vec![k.gelu.fwd(gpu, o(0), i(0), len, kind)?],
        Op::GeluBwd { kind } => vec![k.gelu.bwd(gpu, o(0), i(0), i(1), len, kind)?],
        Op::Relu => vec![k.elementwise.relu_fwd(gpu, o(0), i(0), len)?],
        Op::ReluBwd => vec![k.elementwise.relu_bwd(gpu, o(0), i(0), i(1), len)?],
        Op::Silu => vec![k.elementwise.silu_fwd(gpu, o(0), i(0), len)?],
        Op::SiluBwd => vec![k.elementwise.silu_bwd(gpu, o(0), i(0), i(1), len)?],
        Op::Softmax => vec![k.softmax.fwd(gpu, o(0), i(0), rows, cols)?],
        Op::SoftmaxBwd => vec![k.softmax.bwd(gpu, o(0), i(0), i(1), rows, cols)?],
        Op::SumRows => {
            let cols = g.desc(node.outputs[0]).len();
            vec![k.reduce.fwd(gpu, o(0), i(0), len / cols, cols)?]
        }
        Op::SumRowsBwd => vec![k.reduce.bwd(gpu, o(0), i(0), g.desc(node.outputs[0]).len() / len, len)?],
        Op::SplitHeads { heads } => {
            let [b, t, c] = in_desc(0).shape[..] else {
                return Err(Error::shape("split_heads", "input is not (B, T, C)"));
            };
            vec![k.layout.swap12(gpu, o(0), i(0), [b, t, heads, c / heads])?]
        }
        Op::MergeHeads => {
            let dims = in_desc(0).shape[..].try_into().map_err(|_| Error::shape("merge_heads", "input is not 4D"))?;
            vec![k.layout.swap12(gpu, o(0), i(0), dims)?]
        }
        Op::Concat | Op::Slice { .. } | Op::SliceInto { .. } | Op::SliceBwd { .. } => {
            encode_token_copies(gpu, k, g, ts, node)?
        }
        Op::Dropout { p, salt } => vec![k.dropout.prepare(gpu, o(0), i(0), len, p, salt, ctx.step_params, false)?],
        Op::DropoutBwd { p, salt } => vec![k.dropout.prepare(gpu, o(0), i(0), len, p, salt, ctx.step_params, true)?],
        Op::Embedding { .. } => {
            let (vocab, c) = (in_desc(0).shape[0], cols);
            vec![k.embedding.fwd(gpu, o(0), i(0), i(1), in_desc(1).len(), vocab, c)?]
        }
        Op::EmbeddingBwd { .. } => {
            let (order, starts) = ctx.id_groups.ok_or_else(|| Error::shape("embedding_bwd", "no id groups"))?;
            let d = g.desc(node.outputs[0]);
            vec![k.embedding.bwd(gpu, o(0), i(1), order, starts, in_desc(0).len(), d.shape[0], d.last_dim())?]
        }
        Op::Attention { heads, causal } | Op::AttentionBwd { heads, causal } => {
            let ([b, tq, c], [_, tk, _]) = (tokens3(in_desc(0))?, tokens3(in_desc(1))?);
            let s = AttentionShape { batch: b, heads, tq, tk, head_dim: c / heads, causal };
            if let Op::Attention { .. } = node.op {
                let lens = (node.inputs.len() > 3).then(|| i(3));
                vec![k.attention.fwd(gpu, o(0), o(1), i(0), i(1), i(2), lens, &s)?]
            } else {
                let lens = (node.inputs.len() > 6).then(|| i(6));
                k.attention.bwd(gpu, [o(0), o(1), o(2)], o(3), [i(0), i(1), i(2), i(3), i(4), i(5)], lens, &s)?.to_vec()
            }
        }
        Op::Patchify { patch } => {
            let dims = in_desc(0).shape[..].try_into().map_err(|_| Error::shape("patchify", "image is not 4D"))?;
            vec![k.layout.patchify(gpu, o(0), i(0), dims, patch, false)?]
        }
        Op::PatchifyBwd { patch } => {
            let dims = g.desc(node.outputs[0]).shape[..]
                .try_into()
                .map_err(|_| Error::shape("patchify", "image is not 4D"))?;
            vec![k.layout.patchify(gpu, o(0), i(0), dims, patch, true)?]
        }
        Op::Mask { causal } | Op::MaskBwd { causal } => {
            let dims = in_desc(0).shape[..].try_into().map_err(|_| Error::shape("mask", "scores are not 4D"))?;
            let lens = (node.inputs.len() > 1).then(|| i(1));
            vec![k.mask.prepare(gpu, o(0), i(0), lens, dims, causal, matches!(node.op, Op::MaskBwd { .. }))?]
        }
        Op::Elementwise(ref chain) => {
            let inputs: Vec<(&Tensor, usize)> = (0..node.inputs.len()).map(|n| (i(n), in_desc(n).len())).collect();
            let outputs: Vec<&Tensor> = (0..node.outputs.len()).map(o).collect();
            let n = g.desc(node.outputs[0]).len();
            vec![k.chain.prepare(gpu, chain, &inputs, &outputs, n, ctx.step_params)?]
        }
        Op::CrossEntropy { smoothing, ignore_index } => {
            let ce = &k.cross_entropy;
            ce.fwd_scaled(gpu, [o(0), o(1)], [i(0), i(1)], rows, cols, smoothing, ignore_index, ctx.loss_scale)?
                .to_vec()
        }
    })
}

/// (B, T, C) of a token tensor.
fn tokens3(d: &crate::graph::TensorDesc) -> Result<[usize; 3]> {
    d.shape[..].try_into().map_err(|_| Error::shape("tokens", format!("{} {:?} is not (B, T, C)", d.name, d.shape)))
}
