//! Reverse-mode differentiation of a graph: one short rule per forward op, each appending the
//! backward nodes once, at build time. Gradients of tensors used more than once are summed.

use crate::error::{Error, Result};
use crate::graph::{Graph, Op, Role, TensorId};
use std::collections::HashMap;

/// The gradient tensor of every parameter that the loss depends on.
#[derive(Clone, Debug, Default)]
pub struct Gradients {
    pub of: HashMap<TensorId, TensorId>,
}

impl Gradients {
    /// The gradient of `param`, if the loss depends on it.
    pub fn get(&self, param: TensorId) -> Option<TensorId> {
        self.of.get(&param).copied()
    }
}

/// Appends the backward pass of `loss` to `g`. The loss must be the output of a
/// `cross_entropy` node (which computes its own gradient with respect to the logits).
pub fn backward(g: &mut Graph, loss: TensorId) -> Result<Gradients> {
    backward_wrt(g, loss, &[])
}

/// [`backward`], also differentiating with respect to the f32 graph inputs in `inputs` (for
/// example an image, to get d loss / d pixels).
pub fn backward_wrt(g: &mut Graph, loss: TensorId, inputs: &[TensorId]) -> Result<Gradients> {
    let (root, root_node) =
        g.producer(loss).ok_or_else(|| Error::shape("backward", "the loss is not computed by this graph"))?;
    let root_node = root_node.clone();
    if !matches!(root_node.op, Op::CrossEntropy { .. }) || root_node.outputs[0] != loss {
        return Err(Error::shape(
            "backward",
            format!("the loss must be a cross_entropy output, got {}", root_node.op.name()),
        ));
    }

    let needs = dependents(g, root, inputs)?;
    let mut grads: HashMap<TensorId, TensorId> = HashMap::new();
    grads.insert(root_node.inputs[0], root_node.outputs[1]); // d loss / d logits, fused
    for idx in (0..root).rev() {
        let node = g.nodes[idx].clone();
        let Some(&dy) = node.outputs.first().and_then(|o| grads.get(o)) else { continue };
        rule(g, &node, dy, &needs, &mut grads)?;
    }
    let of = grads.into_iter().filter(|(t, _)| g.desc(*t).role == Role::Param || inputs.contains(t)).collect();
    Ok(Gradients { of })
}

/// Which tensors depend on a parameter or on one of `inputs` (up to the loss's node `root`).
fn dependents(g: &Graph, root: usize, inputs: &[TensorId]) -> Result<Vec<bool>> {
    let mut needs = vec![false; g.tensors.len()];
    for (i, t) in g.tensors.iter().enumerate() {
        needs[i] = t.role == Role::Param;
    }
    for t in inputs {
        if g.desc(*t).role != Role::Input || g.desc(*t).dtype != crate::graph::Dtype::F32 {
            return Err(Error::shape("backward", format!("{} is not an f32 graph input", g.desc(*t).name)));
        }
        needs[t.0] = true;
    }
    for node in &g.nodes[..=root] {
        let any = node.inputs.iter().any(|t| needs[t.0]);
        for o in &node.outputs {
            needs[o.0] = any;
        }
    }
    Ok(needs)
}

/// A single-input op's rule: where its input needs a gradient, `op` on `inputs` gives it.
fn one_input(
    g: &mut Graph,
    grads: &mut HashMap<TensorId, TensorId>,
    x: TensorId,
    op: Op,
    inputs: Vec<TensorId>,
) -> Result<()> {
    let dx = g.push_backward(op, inputs, &[x])[0];
    accumulate(g, grads, x, dx)
}

/// The gradient rule of `node` (one arm per op, exhaustive: an op without a rule does not
/// compile): adds the gradients of its inputs that need one, from `dy`, its output's.
fn rule(
    g: &mut Graph,
    node: &crate::graph::Node,
    dy: TensorId,
    needs: &[bool],
    grads: &mut HashMap<TensorId, TensorId>,
) -> Result<()> {
    let (ins, need) = (&node.inputs, |t: TensorId| needs[t.0]);
    match node.op {
        Op::MatMul { trans_a, trans_b, bias, batched } => {
            matmul_rule(g, node, dy, needs, grads, [trans_a, trans_b, bias, batched])?
        }
        Op::Add => {
            if need(ins[0]) {
                accumulate(g, grads, ins[0], dy)?;
            }
            if need(ins[1]) {
                // A broadcast operand gets the sum over the dimensions it was repeated on.
                let b_shape = g.shape(ins[1]).to_vec();
                let db = if b_shape == g.shape(dy) { dy } else { g.sum_to(dy, &b_shape)? };
                accumulate(g, grads, ins[1], db)?;
            }
        }
        Op::Mul => {
            let outs = g.push_backward(Op::MulBwd, vec![ins[0], ins[1], dy], &ins[..2]);
            for (k, &t) in ins[..2].iter().enumerate() {
                if need(t) {
                    accumulate(g, grads, t, outs[k])?;
                }
            }
        }
        Op::Scale { alpha } if need(ins[0]) => {
            let dx = g.scale(dy, alpha)?;
            accumulate(g, grads, ins[0], dx)?;
        }
        Op::LayerNorm { .. } => {
            let (x, gamma, beta) = (ins[0], ins[1], ins[2]);
            let (mean, rstd) = (node.outputs[1], node.outputs[2]);
            let outs = g.push_backward(Op::LayerNormBwd, vec![x, dy, mean, rstd, gamma], &[x, gamma, beta]);
            for (k, &t) in [x, gamma, beta].iter().enumerate() {
                if need(t) {
                    accumulate(g, grads, t, outs[k])?;
                }
            }
        }
        Op::Gelu { kind } if need(ins[0]) => one_input(g, grads, ins[0], Op::GeluBwd { kind }, vec![ins[0], dy])?,
        Op::Relu if need(ins[0]) => one_input(g, grads, ins[0], Op::ReluBwd, vec![ins[0], dy])?,
        Op::Silu if need(ins[0]) => one_input(g, grads, ins[0], Op::SiluBwd, vec![ins[0], dy])?,
        Op::Softmax if need(ins[0]) => one_input(g, grads, ins[0], Op::SoftmaxBwd, vec![node.outputs[0], dy])?,
        Op::SumRows if need(ins[0]) => one_input(g, grads, ins[0], Op::SumRowsBwd, vec![dy])?,
        Op::SplitHeads { .. } if need(ins[0]) => {
            let dx = g.merge_heads(dy)?;
            accumulate(g, grads, ins[0], dx)?;
        }
        Op::MergeHeads if need(ins[0]) => {
            let heads = g.shape(ins[0])[1];
            let dx = g.split_heads(dy, heads)?;
            accumulate(g, grads, ins[0], dx)?;
        }
        Op::Concat => concat_rule(g, [ins[0], ins[1]], dy, needs, grads)?,
        Op::Slice { dim, start, .. } if need(ins[0]) => {
            let total = g.shape(ins[0])[dim];
            let dx = g.push_backward(Op::SliceBwd { dim, start, total }, vec![dy], &[ins[0]])[0];
            accumulate(g, grads, ins[0], dx)?;
        }
        Op::Dropout { p, salt } if need(ins[0]) => one_input(g, grads, ins[0], Op::DropoutBwd { p, salt }, vec![dy])?,
        Op::Embedding { padding } if need(ins[0]) => {
            one_input(g, grads, ins[0], Op::EmbeddingBwd { padding }, vec![ins[1], dy])?
        }
        Op::Attention { heads, causal } => {
            let (q, k, v) = (ins[0], ins[1], ins[2]);
            let mut inputs = vec![q, k, v, node.outputs[0], dy, node.outputs[1]];
            inputs.extend(ins.get(3).copied());
            let outs = g.push_backward(Op::AttentionBwd { heads, causal }, inputs, &[q, k, v, node.outputs[1]]);
            for (n, &t) in [q, k, v].iter().enumerate() {
                if need(t) {
                    accumulate(g, grads, t, outs[n])?;
                }
            }
        }
        Op::Patchify { patch } if need(ins[0]) => one_input(g, grads, ins[0], Op::PatchifyBwd { patch }, vec![dy])?,
        Op::Mask { causal } if need(ins[0]) => {
            let mut inputs = vec![dy];
            inputs.extend(ins.get(1).copied());
            let dx = g.push_backward(Op::MaskBwd { causal }, inputs, &[ins[0]])[0];
            accumulate(g, grads, ins[0], dx)?;
        }
        Op::CrossEntropy { .. } => {
            return Err(Error::shape("backward", "a cross_entropy loss may only be the final loss"));
        }
        // The rules above that only act when their input needs a gradient.
        Op::Scale { .. }
        | Op::Gelu { .. }
        | Op::Relu
        | Op::Silu
        | Op::Softmax
        | Op::SumRows
        | Op::SplitHeads { .. }
        | Op::MergeHeads
        | Op::Slice { .. }
        | Op::Dropout { .. }
        | Op::Embedding { .. }
        | Op::Patchify { .. }
        | Op::Mask { .. } => {}
        // Rewrites made after differentiation (mixed precision's casts, fusion).
        Op::CastF16
        | Op::MatMulAcc { .. }
        | Op::MatMulResidual { .. }
        | Op::MatMulRowSums { .. }
        | Op::MatMulAct { .. }
        | Op::MatMulActGrad { .. }
        | Op::SliceInto { .. }
        | Op::LayerNormBwdAcc
        | Op::Elementwise(_) => {
            let op = node.op.name();
            return Err(Error::shape("backward", format!("{op} has no gradient rule: differentiate first")));
        }
        // Listed one by one, so that a new op cannot reach training without a rule.
        Op::MulBwd
        | Op::LayerNormBwd
        | Op::GeluBwd { .. }
        | Op::ReluBwd
        | Op::SiluBwd
        | Op::SoftmaxBwd
        | Op::SumRowsBwd
        | Op::SliceBwd { .. }
        | Op::DropoutBwd { .. }
        | Op::EmbeddingBwd { .. }
        | Op::AttentionBwd { .. }
        | Op::PatchifyBwd { .. }
        | Op::MaskBwd { .. } => {
            return Err(Error::shape(
                "backward",
                format!("{} has no gradient rule (second-order gradients are not supported)", node.op.name()),
            ));
        }
    }
    Ok(())
}

/// Concat's rule: each input's gradient is its run of tokens of `dy`; a broadcast first input
/// (a class token shared by the batch) gets the sum over the batch.
fn concat_rule(
    g: &mut Graph,
    [a, b]: [TensorId; 2],
    dy: TensorId,
    needs: &[bool],
    grads: &mut HashMap<TensorId, TensorId>,
) -> Result<()> {
    let (t1, t2) = (g.shape(a)[1], g.shape(b)[1]);
    if needs[a.0] {
        let da = g.slice_tokens(dy, 0, t1)?;
        let a_shape = g.shape(a).to_vec();
        let da = if g.shape(da) == a_shape { da } else { g.sum_to(da, &a_shape)? };
        accumulate(g, grads, a, da)?;
    }
    if needs[b.0] {
        let db = g.slice_tokens(dy, t1, t2)?;
        accumulate(g, grads, b, db)?;
    }
    Ok(())
}

/// MatMul's rule: each operand's gradient is a product of `dy` with the other (transposed as
/// the forward product was), the bias's the sum of `dy`'s rows.
fn matmul_rule(
    g: &mut Graph,
    node: &crate::graph::Node,
    dy: TensorId,
    needs: &[bool],
    grads: &mut HashMap<TensorId, TensorId>,
    [trans_a, trans_b, bias, batched]: [bool; 4],
) -> Result<()> {
    let (ins, need) = (&node.inputs, |t: TensorId| needs[t.0]);
    let (a, b) = (ins[0], ins[1]);
    if need(a) {
        let da = if trans_a {
            g.matmul_full(b, dy, None, trans_b, true, batched)?
        } else {
            g.matmul_full(dy, b, None, false, !trans_b, batched)?
        };
        reshape_like(g, da, a)?;
        accumulate(g, grads, a, da)?;
    }
    if need(b) {
        let db = if trans_b {
            g.matmul_full(dy, a, None, true, trans_a, batched)?
        } else {
            g.matmul_full(a, dy, None, !trans_a, false, batched)?
        };
        reshape_like(g, db, b)?;
        accumulate(g, grads, b, db)?;
    }
    if bias && need(ins[2]) {
        let dbias = g.sum_rows(dy)?;
        accumulate(g, grads, ins[2], dbias)?;
    }
    Ok(())
}

/// A gradient computed as a folded matrix takes the shape of its tensor (same layout).
fn reshape_like(g: &mut Graph, grad: TensorId, like: TensorId) -> Result<()> {
    let shape = g.shape(like).to_vec();
    if g.desc(grad).len() != shape.iter().product::<usize>() {
        return Err(Error::shape(
            "backward",
            format!("gradient of {} has {} elements", g.desc(like).name, g.desc(grad).len()),
        ));
    }
    g.tensors[grad.0].shape = shape;
    Ok(())
}

/// Records `d` as (part of) the gradient of `t`, summing with an earlier part.
fn accumulate(g: &mut Graph, grads: &mut HashMap<TensorId, TensorId>, t: TensorId, d: TensorId) -> Result<()> {
    let total = match grads.get(&t) {
        Some(&prev) => g.add(prev, d)?,
        None => d,
    };
    grads.insert(t, total);
    Ok(())
}
