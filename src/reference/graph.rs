//! Runs a whole graph on the CPU with the reference ops: the oracle for the GPU executor and
//! the function the composed-graph gradient checks differentiate numerically.

use super::attention::{attention_backward_with_delta, attention_forward, AttentionShape};
use super::{
    crossentropy, dropout, elementwise as ew, embedding, gelu, layernorm, layout, mask, matmul, reduce, softmax, Real,
};
use crate::graph::build::matmul_dims;
use crate::graph::MatmulShape;
use crate::graph::{Graph, Op};

/// Evaluates every node of `g` in order. `values[t]` must hold each input and parameter
/// (u32 inputs as their integer values); every activation is (re)computed. Dropout uses seed 0.
pub fn evaluate<T: Real>(g: &Graph, values: &mut [Vec<T>]) {
    evaluate_seeded(g, values, 0)
}

/// [`evaluate`] with the step seed dropout draws from.
pub fn evaluate_seeded<T: Real>(g: &Graph, values: &mut [Vec<T>], seed: u32) {
    for node in &g.nodes {
        let outs = run_node(g, node, values, seed);
        for (t, v) in node.outputs.iter().zip(outs) {
            values[t.0] = v;
        }
    }
}

use super::cast::round_f16_real as round_f16;
pub use super::chain::{activation_backward, activation_forward};

fn zeros<T: Real>(n: usize) -> Vec<T> {
    vec![T::of(0.0); n]
}

/// Computes the outputs of one node from `values`; an output the graph keeps in f16 is
/// rounded as its kernel's f16 form stores it.
pub fn run_node<T: Real>(g: &Graph, node: &crate::graph::Node, values: &[Vec<T>], seed: u32) -> Vec<Vec<T>> {
    let mut outs = node_outputs(g, node, values, seed);
    for (v, t) in outs.iter_mut().zip(&node.outputs) {
        if g.desc(*t).dtype == crate::graph::Dtype::F16 {
            v.iter_mut().for_each(|x| *x = round_f16(*x));
        }
    }
    outs
}

/// The outputs of a product node: MatMul and its fused forms (a fused dropout draws from `seed`).
fn product_outputs<T: Real>(g: &Graph, node: &crate::graph::Node, values: &[Vec<T>], seed: u32) -> Vec<Vec<T>> {
    let input = |k: usize| &values[node.inputs[k].0][..];
    let out_len = |k: usize| g.desc(node.outputs[k]).len();
    let in_desc = |k: usize| g.desc(node.inputs[k]);
    let (trans_a, trans_b, bias, batched) = node.op.product().expect("a product");
    let d =
        matmul_dims(&in_desc(0).shape, &in_desc(1).shape, trans_a, trans_b, batched).expect("checked at build time");
    let shape = MatmulShape { bias, ..MatmulShape::packed(d.batch, d.m, d.n, d.k, trans_a, trans_b) };
    // MatMulAcc adds the product to its last input, the accumulator.
    let (mut c, accumulate) = match node.op {
        Op::MatMulAcc { .. } => (input(node.inputs.len() - 1).to_vec(), true),
        _ => (zeros(out_len(0)), false),
    };
    matmul::matmul_forward(&mut c, input(0), input(1), bias.then(|| input(2)), &MatmulShape { accumulate, ..shape });
    let dropped = |x: Vec<T>| match node.op.product_dropout() {
        Some(drop) => {
            let (threshold, scale) = crate::graph::params::dropout_constants(drop.p()).expect("checked at build time");
            let mut y = zeros(x.len());
            dropout::dropout_forward(&mut y, &x, seed, drop.salt, threshold, scale);
            y
        }
        None => x,
    };
    match node.op {
        Op::MatMulRowSums { .. } => vec![c, matmul::row_sums_of_a(input(0), &shape)],
        Op::MatMulResidual { .. } => {
            let residual = input(node.inputs.len() - 1);
            vec![dropped(c).into_iter().zip(residual).map(|(x, &r)| r + x).collect()]
        }
        Op::MatMulAct { act, .. } => {
            let y = dropped(activation_forward(act, &c));
            vec![c, y]
        }
        Op::MatMulActGrad { act, .. } => vec![activation_backward(act, input(2), &dropped(c))],
        _ => vec![c],
    }
}

fn node_outputs<T: Real>(g: &Graph, node: &crate::graph::Node, values: &[Vec<T>], seed: u32) -> Vec<Vec<T>> {
    let input = |k: usize| &values[node.inputs[k].0][..];
    let out_len = |k: usize| g.desc(node.outputs[k]).len();
    let in_desc = |k: usize| g.desc(node.inputs[k]);
    match node.op {
        Op::MatMul { .. }
        | Op::MatMulAcc { .. }
        | Op::MatMulResidual { .. }
        | Op::MatMulRowSums { .. }
        | Op::MatMulAct { .. }
        | Op::MatMulActGrad { .. } => product_outputs(g, node, values, seed),
        Op::Add => {
            let (a, b) = (input(0), input(1));
            vec![a.iter().enumerate().map(|(i, &x)| x + b[i % b.len()]).collect()]
        }
        Op::Mul => {
            let mut out = zeros(out_len(0));
            ew::mul_forward(&mut out, input(0), input(1));
            vec![out]
        }
        Op::MulBwd => {
            let (mut da, mut db) = (zeros(out_len(0)), zeros(out_len(1)));
            ew::mul_backward(&mut da, &mut db, input(2), input(0), input(1));
            vec![da, db]
        }
        Op::Scale { alpha } => {
            let mut out = zeros(out_len(0));
            ew::scale_forward(&mut out, input(0), T::of(alpha as f64));
            vec![out]
        }
        Op::LayerNorm { eps } => {
            let (rows, cols) = (in_desc(0).rows(), in_desc(0).last_dim());
            let (mut y, mut mean, mut rstd) = (zeros(rows * cols), zeros(rows), zeros(rows));
            layernorm::layernorm_forward(
                &mut y,
                &mut mean,
                &mut rstd,
                input(0),
                input(1),
                input(2),
                rows,
                cols,
                eps as f64,
            );
            vec![y, mean, rstd]
        }
        Op::LayerNormBwd | Op::LayerNormBwdAcc => {
            let (rows, cols) = (in_desc(0).rows(), in_desc(0).last_dim());
            let (mut dx, mut dg, mut db) = (zeros(rows * cols), zeros(cols), zeros(cols));
            layernorm::layernorm_backward(
                &mut dx,
                &mut dg,
                &mut db,
                input(0),
                input(1),
                input(2),
                input(3),
                input(4),
                rows,
                cols,
            );
            if node.op == Op::LayerNormBwdAcc {
                dx.iter_mut().zip(input(5)).for_each(|(d, a)| *d += *a);
            }
            vec![dx, dg, db]
        }
        Op::Gelu { kind } => {
            let mut y = zeros(out_len(0));
            gelu::gelu_forward(&mut y, input(0), kind);
            vec![y]
        }
        Op::GeluBwd { kind } => {
            let mut dx = zeros(out_len(0));
            gelu::gelu_backward(&mut dx, input(0), input(1), kind);
            vec![dx]
        }
        Op::Relu => {
            let mut y = zeros(out_len(0));
            ew::relu_forward(&mut y, input(0));
            vec![y]
        }
        Op::ReluBwd => {
            let mut dx = zeros(out_len(0));
            ew::relu_backward(&mut dx, input(0), input(1));
            vec![dx]
        }
        Op::Silu => {
            let mut y = zeros(out_len(0));
            ew::silu_forward(&mut y, input(0));
            vec![y]
        }
        Op::SiluBwd => {
            let mut dx = zeros(out_len(0));
            ew::silu_backward(&mut dx, input(0), input(1));
            vec![dx]
        }
        Op::Softmax => {
            let (rows, cols) = (in_desc(0).rows(), in_desc(0).last_dim());
            let mut y = zeros(rows * cols);
            softmax::softmax_forward(&mut y, input(0), rows, cols);
            vec![y]
        }
        Op::SoftmaxBwd => {
            let (rows, cols) = (in_desc(0).rows(), in_desc(0).last_dim());
            let mut dx = zeros(rows * cols);
            softmax::softmax_backward(&mut dx, input(0), input(1), rows, cols);
            vec![dx]
        }
        Op::SumRows => {
            let cols = out_len(0);
            let mut out = zeros(cols);
            reduce::reduce_cols_forward(&mut out, input(0), in_desc(0).len() / cols, cols);
            vec![out]
        }
        Op::SumRowsBwd => {
            let cols = in_desc(0).len();
            let mut dx = zeros(out_len(0));
            reduce::reduce_cols_backward(&mut dx, input(0), out_len(0) / cols, cols);
            vec![dx]
        }
        _ => shaping_and_loss_outputs(g, node, values, seed),
    }
}

/// [`node_outputs`] of the ops that move values (heads, concatenation, slices, embeddings,
/// patches, masks, dropout, f16 rounding), attention and the loss.
fn shaping_and_loss_outputs<T: Real>(
    g: &Graph,
    node: &crate::graph::Node,
    values: &[Vec<T>],
    seed: u32,
) -> Vec<Vec<T>> {
    let input = |k: usize| &values[node.inputs[k].0][..];
    let out_len = |k: usize| g.desc(node.outputs[k]).len();
    let in_desc = |k: usize| g.desc(node.inputs[k]);
    match node.op {
        Op::SplitHeads { heads } => {
            let [b, t, c] = in_desc(0).shape[..] else { unreachable!("checked at build time") };
            let mut y = zeros(out_len(0));
            layout::swap12_forward(&mut y, input(0), [b, t, heads, c / heads]);
            vec![y]
        }
        Op::MergeHeads => {
            let [b, h, t, d] = in_desc(0).shape[..] else { unreachable!("checked at build time") };
            let mut y = zeros(out_len(0));
            layout::swap12_forward(&mut y, input(0), [b, h, t, d]);
            vec![y]
        }
        Op::Concat => {
            let (a, bd) = (in_desc(0), in_desc(1));
            let ([ba, t1, c], [bb, t2, _]) =
                (a.shape[..3].try_into().unwrap_or([0; 3]), bd.shape[..3].try_into().unwrap_or([0; 3]));
            let mut y = zeros(out_len(0));
            layout::copy_tokens(&mut y, input(0), bb, c, t1, t1 + t2, 0, 0, t1, ba == 1 && bb > 1);
            layout::copy_tokens(&mut y, input(1), bb, c, t2, t1 + t2, 0, t1, t2, false);
            vec![y]
        }
        Op::Slice { dim, start, len } => {
            let [b, t, c] = crate::graph::around(&in_desc(0).shape, dim);
            let mut y = zeros(out_len(0));
            layout::copy_tokens(&mut y, input(0), b, c, t, len, start, 0, len, false);
            vec![y]
        }
        Op::SliceInto { dim, start } => {
            let [b, len, c] = crate::graph::around(&in_desc(0).shape, dim);
            let total = in_desc(1).shape[dim];
            let mut out = input(1).to_vec();
            layout::copy_tokens(&mut out, input(0), b, c, len, total, 0, start, len, false);
            vec![out]
        }
        Op::SliceBwd { dim, start, total } => {
            let [b, len, c] = crate::graph::around(&in_desc(0).shape, dim);
            let mut dx = zeros(out_len(0));
            layout::copy_tokens(&mut dx, input(0), b, c, len, total, 0, start, len, false);
            vec![dx]
        }
        Op::Dropout { p, salt } | Op::DropoutBwd { p, salt } => {
            let (threshold, scale) = crate::graph::params::dropout_constants(p).expect("checked at build time");
            let mut y = zeros(out_len(0));
            dropout::dropout_forward(&mut y, input(0), seed, salt, threshold, scale);
            vec![y]
        }
        Op::Embedding { .. } => {
            let ids: Vec<u32> = input(1).iter().map(|t| t.to_f64() as u32).collect();
            let mut y = zeros(out_len(0));
            embedding::embedding_forward(&mut y, input(0), &ids, in_desc(0).last_dim());
            vec![y]
        }
        Op::EmbeddingBwd { padding } => {
            let ids: Vec<u32> = input(0).iter().map(|t| t.to_f64() as u32).collect();
            let mut dtable = zeros(out_len(0));
            embedding::embedding_backward(&mut dtable, input(1), &ids, in_desc(1).last_dim(), padding);
            vec![dtable]
        }
        Op::Attention { heads, causal } | Op::AttentionBwd { heads, causal } => {
            let (q, k) = (in_desc(0), in_desc(1));
            let (b, tq, c, tk) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1]);
            let s = AttentionShape { batch: b, heads, tq, tk, head_dim: c / heads, causal };
            let has_lens = node.inputs.len() > if matches!(node.op, Op::Attention { .. }) { 3 } else { 6 };
            let lens: Option<Vec<u32>> =
                has_lens.then(|| input(node.inputs.len() - 1).iter().map(|t| t.to_f64() as u32).collect());
            if matches!(node.op, Op::Attention { .. }) {
                let (mut o, mut lse) = (zeros(out_len(0)), zeros(out_len(1)));
                attention_forward(&mut o, &mut lse, input(0), input(1), input(2), lens.as_deref(), &s);
                vec![o, lse]
            } else {
                // delta = rowsum(do * o) per head from the stored o, as the kernel computes it.
                let (o, d_o) = (input(3), input(4));
                let mut delta = zeros(out_len(3));
                for bi in 0..b {
                    for h in 0..heads {
                        for i in 0..tq {
                            let at = ((bi * tq + i) * heads + h) * s.head_dim;
                            let sum: f64 = (0..s.head_dim).map(|d| (o[at + d] * d_o[at + d]).to_f64()).sum();
                            delta[(bi * heads + h) * tq + i] = T::of(sum);
                        }
                    }
                }
                let (mut dq, mut dk, mut dv) = (zeros(out_len(0)), zeros(out_len(1)), zeros(out_len(2)));
                let qkv_do = [input(0), input(1), input(2), d_o];
                attention_backward_with_delta(&mut dq, &mut dk, &mut dv, qkv_do, &delta, lens.as_deref(), &s);
                vec![dq, dk, dv, delta]
            }
        }
        Op::Patchify { patch } => {
            let dims: [usize; 4] = in_desc(0).shape[..].try_into().expect("checked at build time");
            let mut y = zeros(out_len(0));
            layout::patchify(&mut y, input(0), dims, patch, false);
            vec![y]
        }
        Op::PatchifyBwd { patch } => {
            let dims: [usize; 4] = g.desc(node.outputs[0]).shape[..].try_into().expect("checked at build time");
            let mut dx = zeros(out_len(0));
            layout::patchify(&mut dx, input(0), dims, patch, true);
            vec![dx]
        }
        Op::Mask { causal } | Op::MaskBwd { causal } => {
            let dims: [usize; 4] = in_desc(0).shape[..].try_into().expect("checked at build time");
            let lens: Option<Vec<u32>> =
                (node.inputs.len() > 1).then(|| input(1).iter().map(|t| t.to_f64() as u32).collect());
            let mut y = zeros(out_len(0));
            mask::mask_apply(&mut y, input(0), dims, lens.as_deref(), causal, matches!(node.op, Op::MaskBwd { .. }));
            vec![y]
        }
        Op::CastF16 => vec![input(0).iter().map(|&v| round_f16(v)).collect()],
        Op::Elementwise(ref chain) => {
            let inputs: Vec<&[T]> = (0..node.inputs.len()).map(input).collect();
            super::chain::chain_outputs(chain, &inputs, out_len(0), seed)
        }
        Op::CrossEntropy { smoothing, ignore_index } => {
            let vocab = in_desc(0).last_dim();
            let targets: Vec<u32> = input(1).iter().map(|t| t.to_f64() as u32).collect();
            let mut dlogits = zeros(out_len(1));
            let loss = crossentropy::cross_entropy_forward(
                &mut dlogits,
                input(0),
                &targets,
                vocab,
                smoothing as f64,
                ignore_index,
            );
            vec![vec![loss], dlogits]
        }
        // The arithmetic ops are node_outputs' own.
        ref op => unreachable!("{} is evaluated by node_outputs", op.name()),
    }
}
