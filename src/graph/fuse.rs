//! Fusion: rewrites of a differentiated graph that do the same arithmetic in fewer dispatches.
//! The executor applies them to every graph it runs (unless `WGFORMER_FUSION=off`); the
//! checked mode compares the fused graph node by node with the reference.
//!
//! `accumulate_products`: `Add(acc, product)` where the product (a MatMul's output, or a
//! LayerNorm backward's dx) is read nowhere else and `acc` is read last by that Add becomes one
//! MatMulAcc (LayerNormBwdAcc) that adds the product into acc's buffer (the kernels'
//! accumulate flag). Backward passes are full of these
//! Adds: a tensor read by several products gets its gradient as a sum of their products (the
//! q, k and v projections of one input, an encoder's output read by every cross-attention).
//!
//! `add_residuals`: the Adds left, where the product's other operand is read again later (a
//! residual connection: the stream feeds a LayerNorm's backward too), become MatMulResidual:
//! the product adds it in its store, into a new tensor. A dropout between the product and the
//! Add is applied in the same store (dropout draws from a hash of the element's index, so the
//! product's kernel draws the same mask).
//!
//! `sum_bias_gradients`: a linear layer's bias gradient, SumRows(dY), and its weight gradient,
//! dY^T X, read the same dY: one MatMulRowSums computes both (the row sums of op(A) = dY^T).
//!
//! `activate_products`: an activation (GELU, ReLU, SiLU) of a product becomes MatMulAct, which
//! writes the product and its activation; an activation's backward whose incoming gradient is a
//! product read nowhere else becomes MatMulActGrad (a feed-forward block's two elementwise
//! dispatches, forward and backward, gone). A dropout after the activation, and its backward
//! before the activation's backward, go into the same stores. These two fusions take f16
//! tensors too (mixed precision: the f16 products read and write them in f16).
//!
//! `fuse_chains` (`chains.rs`), last: the elementwise nodes left that read one another's
//! outputs run as one generated kernel each (`Op::Elementwise`).

use super::{Activation, Dtype, Graph, Node, Op, ProductDropout, Role, TensorId};
use std::collections::HashSet;

mod chains;
pub use chains::fuse_chains;

/// Applies every fusion to `g`, leaving the tensors in `pinned` (read after the step) as they
/// are; returns how many dispatches it saved.
pub fn fuse(g: &mut Graph, pinned: &[TensorId]) -> usize {
    accumulate_products(g, pinned)
        + add_residuals(g, pinned)
        + sum_bias_gradients(g)
        + activate_products(g, pinned)
        + assemble_slices(g, pinned)
        + fuse_chains(g, pinned)
}

/// Who writes and reads each tensor, and where an in-place op writes over it.
struct Uses {
    writer: Vec<Option<usize>>,
    readers: Vec<usize>,
    first: Vec<usize>,
    last: Vec<usize>,
    overwritten: Vec<Option<usize>>,
}

fn uses(g: &Graph) -> Uses {
    let n = g.tensors.len();
    let mut u = Uses {
        writer: vec![None; n],
        readers: vec![0; n],
        first: vec![usize::MAX; n],
        last: vec![0; n],
        overwritten: vec![None; n],
    };
    for (i, node) in g.nodes.iter().enumerate() {
        node.outputs.iter().for_each(|o| u.writer[o.0] = Some(i));
        for t in &node.inputs {
            u.readers[t.0] += 1;
            u.first[t.0] = u.first[t.0].min(i);
            u.last[t.0] = i;
        }
        if let Some((k, _)) = node.op.in_place(node.inputs.len()) {
            u.overwritten[node.inputs[k].0] = Some(i);
        }
    }
    u
}

impl Uses {
    /// Whether node `m` may run at `i` instead, writing over `acc` in place: acc is none of its
    /// inputs (a kernel cannot read and write one buffer), and no input of it is written over
    /// in place between the two.
    fn can_move(&self, g: &Graph, m: usize, i: usize, acc: TensorId) -> bool {
        !g.nodes[m].inputs.contains(&acc) && self.inputs_kept(g, m, i)
    }

    /// Whether no input of node `m` is written over in place after `m`, up to `i`.
    fn inputs_kept(&self, g: &Graph, m: usize, i: usize) -> bool {
        g.nodes[m].inputs.iter().all(|t| self.overwritten[t.0].is_none_or(|k| k <= m || k > i))
    }

    /// Records that node `m` now runs at `i`, writing over `acc` (if any).
    fn moved(&mut self, g: &Graph, m: usize, i: usize, acc: Option<TensorId>) {
        for t in &g.nodes[m].inputs {
            self.last[t.0] = self.last[t.0].max(i);
        }
        if let Some(acc) = acc {
            self.overwritten[acc.0] = Some(i);
        }
    }

    /// The node that writes `t`, unless it was removed.
    fn live_writer(&self, t: TensorId, removed: &[bool]) -> Option<usize> {
        self.writer[t.0].filter(|&m| !removed[m])
    }
}

/// An f32 activation outside `pinned`: a buffer a fusion may write over or drop.
fn plain_f32(g: &Graph, pinned: &HashSet<TensorId>, t: TensorId) -> bool {
    let d = g.desc(t);
    d.role == Role::Activation && d.dtype == Dtype::F32 && !pinned.contains(&t)
}

/// A float activation outside `pinned`, f32 or (mixed precision) f16: a value a fused
/// product may read or write in either type (the f16 products have forms for both).
fn plain_float(g: &Graph, pinned: &HashSet<TensorId>, t: TensorId) -> bool {
    let d = g.desc(t);
    d.role == Role::Activation && matches!(d.dtype, Dtype::F32 | Dtype::F16) && !pinned.contains(&t)
}

/// Drops the nodes marked in `removed`.
fn drop_nodes(g: &mut Graph, removed: &[bool]) {
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !removed[k - 1]
    });
}

/// The slices fusion: a tensor used as slices that tile it (an attention's packed q, k and v
/// weights) gets its gradient as a sum of zero-padded slices' gradients (SliceBwd: a fill and a
/// copy each, then an Add per extra slice). `Add(acc, SliceBwd(part))` where acc is zero over
/// the part's range becomes `SliceInto`: one copy into acc in place. Returns the dispatches saved.
pub fn assemble_slices(g: &mut Graph, pinned: &[TensorId]) -> usize {
    let pinned: HashSet<TensorId> = pinned.iter().copied().collect();
    let mut u = uses(g);
    // The ranges along `dim` that may be non-zero, for tensors made by SliceBwd and SliceInto.
    let mut filled: std::collections::HashMap<TensorId, (usize, Vec<(usize, usize)>)> = Default::default();
    let mut removed = vec![false; g.nodes.len()];
    let mut saved = 0;
    for i in 0..g.nodes.len() {
        let node = &g.nodes[i];
        if let Op::SliceBwd { dim, start, .. } = node.op {
            let len = g.desc(node.inputs[0]).shape[dim];
            filled.insert(node.outputs[0], (dim, vec![(start, start + len)]));
            continue;
        }
        let (x, y, out) = match (&node.op, &node.inputs[..]) {
            (Op::Add, &[x, y]) if x != y && g.desc(x).shape == g.desc(y).shape => (x, y, node.outputs[0]),
            _ => continue,
        };
        for (slice, acc) in [(y, x), (x, y)] {
            let Some(m) = u.writer[slice.0].filter(|&m| !removed[m]) else { continue };
            let Op::SliceBwd { dim, start, .. } = g.nodes[m].op else { continue };
            let Some((acc_dim, ranges)) = filled.get(&acc) else { continue };
            let end = start + g.desc(g.nodes[m].inputs[0]).shape[dim];
            let disjoint = ranges.iter().all(|&(a, z)| end <= a || z <= start);
            let ok = u.readers[slice.0] == 1 && u.last[acc.0] == i && plain_f32(g, &pinned, acc) && *acc_dim == dim;
            if !(ok && disjoint && g.desc(out).dtype == Dtype::F32 && u.can_move(g, m, i, acc)) {
                continue;
            }
            u.moved(g, m, i, Some(acc));
            let mut ranges = ranges.clone();
            ranges.push((start, end));
            let part = g.nodes[m].inputs[0];
            g.nodes[i] = Node { op: Op::SliceInto { dim, start }, inputs: vec![part, acc], outputs: vec![out] };
            filled.insert(out, (dim, ranges));
            removed[m] = true;
            saved += 2; // the SliceBwd's fill and copy, and the Add, for one copy
            break;
        }
    }
    drop_nodes(g, &removed);
    saved
}

/// The product + Add fusion (see the module doc); returns the Adds removed.
pub fn accumulate_products(g: &mut Graph, pinned: &[TensorId]) -> usize {
    let pinned: HashSet<TensorId> = pinned.iter().copied().collect();
    let mut u = uses(g);
    let plain_f32 = |g: &Graph, t: TensorId| plain_f32(g, &pinned, t);
    let mut removed = vec![false; g.nodes.len()];
    let mut fused = 0;
    for i in 0..g.nodes.len() {
        let Some((x, y, out)) = plain_add(g, i) else { continue };
        for (product, acc) in [(y, x), (x, y)] {
            let Some(m) = u.live_writer(product, &removed) else { continue };
            let op = match g.nodes[m].op {
                Op::MatMul { trans_a, trans_b, bias, batched } => Op::MatMulAcc { trans_a, trans_b, bias, batched },
                Op::LayerNormBwd if g.nodes[m].outputs[0] == product => Op::LayerNormBwdAcc,
                _ => continue,
            };
            // The product is read only by this Add; acc is read last here, so it may be overwritten.
            if u.readers[product.0] != 1 || !plain_f32(g, product) || u.last[acc.0] != i || !plain_f32(g, acc) {
                continue;
            }
            // The producer's other outputs move to the Add's place: none may be read before it.
            if g.nodes[m].outputs[1..].iter().any(|o| u.first[o.0] < i) || !u.can_move(g, m, i, acc) {
                continue;
            }
            u.moved(g, m, i, Some(acc));
            let mut inputs = g.nodes[m].inputs.clone();
            inputs.push(acc);
            // The fused node keeps the producer's other outputs (a LayerNorm's dgamma, dbeta).
            let mut outputs = g.nodes[m].outputs.clone();
            outputs[0] = out;
            g.nodes[i] = Node { op, inputs, outputs };
            removed[m] = true;
            fused += 1;
            break;
        }
    }
    drop_nodes(g, &removed);
    fused
}

/// The Add of two same-shape f32 tensors at node `i`: (x, y, out).
fn plain_add(g: &Graph, i: usize) -> Option<(TensorId, TensorId, TensorId)> {
    let node = &g.nodes[i];
    match (&node.op, &node.inputs[..]) {
        (Op::Add, &[x, y])
            if x != y && g.desc(x).shape == g.desc(y).shape && g.desc(node.outputs[0]).dtype == Dtype::F32 =>
        {
            Some((x, y, node.outputs[0]))
        }
        _ => None,
    }
}

/// The residual fusion (see the module doc); returns the nodes removed.
pub fn add_residuals(g: &mut Graph, pinned: &[TensorId]) -> usize {
    let pinned: HashSet<TensorId> = pinned.iter().copied().collect();
    let mut u = uses(g);
    let mut removed = vec![false; g.nodes.len()];
    let mut fused = 0;
    for i in 0..g.nodes.len() {
        let Some((x, y, out)) = plain_add(g, i) else { continue };
        for (summand, residual) in [(y, x), (x, y)] {
            // The product itself, or a dropout of it.
            let (m, dropout) = match dropped_product(g, &u, &removed, &pinned, summand, false) {
                Some((d, m, drop)) => (m, Some((d, drop))),
                None => match u.live_writer(summand, &removed) {
                    Some(m) => (m, None),
                    None => continue,
                },
            };
            let Op::MatMul { trans_a, trans_b, bias, batched } = g.nodes[m].op else { continue };
            let residual_f32 = g.desc(residual).dtype == Dtype::F32;
            if u.readers[summand.0] != 1
                || !plain_float(g, &pinned, summand)
                || !residual_f32
                || !u.inputs_kept(g, m, i)
            {
                continue;
            }
            u.moved(g, m, i, None);
            let mut inputs = g.nodes[m].inputs.clone();
            inputs.push(residual);
            let drop = dropout.map(|(_, drop)| drop);
            g.nodes[i] =
                Node { op: Op::MatMulResidual { trans_a, trans_b, bias, batched, drop }, inputs, outputs: vec![out] };
            removed[m] = true;
            if let Some((d, _)) = dropout {
                removed[d] = true;
                fused += 1;
            }
            fused += 1;
            break;
        }
    }
    drop_nodes(g, &removed);
    fused
}

/// Where `t` is a dropout (its backward where `backward`) of a plain MatMul's float product read
/// by that dropout only, and `t` is read once: (the dropout's node, the product's node, the
/// dropout), for a product that applies the dropout in its store.
fn dropped_product(
    g: &Graph,
    u: &Uses,
    removed: &[bool],
    pinned: &HashSet<TensorId>,
    t: TensorId,
    backward: bool,
) -> Option<(usize, usize, ProductDropout)> {
    let d = u.live_writer(t, removed)?;
    let (p, salt) = match g.nodes[d].op {
        Op::Dropout { p, salt } if !backward => (p, salt),
        Op::DropoutBwd { p, salt } if backward => (p, salt),
        _ => return None,
    };
    let product = g.nodes[d].inputs[0];
    let m = u.live_writer(product, removed)?;
    let plain = matches!(g.nodes[m].op, Op::MatMul { .. }) && u.readers[product.0] == 1;
    let floats = plain_float(g, pinned, product) && plain_float(g, pinned, t);
    (plain && floats && u.readers[t.0] == 1).then_some((d, m, ProductDropout::new(p, salt)))
}

/// The bias-gradient fusion (see the module doc): `SumRows(dy)` and a product `op(dy) op(b)`
/// with `dy` transposed (so op(A)'s rows are dy's columns) become one MatMulRowSums, placed at
/// the later of the two, whose outputs nothing reads before it. Returns the SumRows removed.
pub fn sum_bias_gradients(g: &mut Graph) -> usize {
    let mut u = uses(g);
    let mut products: std::collections::HashMap<TensorId, Vec<usize>> = Default::default();
    for (m, node) in g.nodes.iter().enumerate() {
        if let Op::MatMul { trans_a: true, bias: false, batched: false, .. } = node.op {
            products.entry(node.inputs[0]).or_default().push(m);
        }
    }
    let mut removed = vec![false; g.nodes.len()];
    let mut fused = 0;
    for s in 0..g.nodes.len() {
        if g.nodes[s].op != Op::SumRows || g.desc(g.nodes[s].outputs[0]).dtype != Dtype::F32 {
            continue;
        }
        let (dy, sums) = (g.nodes[s].inputs[0], g.nodes[s].outputs[0]);
        let candidates = products.get(&dy).map(Vec::as_slice).unwrap_or_default();
        for &m in candidates.iter().filter(|&&m| !removed[m]) {
            // A product already fused with another SumRows is no longer a MatMul.
            let Op::MatMul { trans_b, .. } = g.nodes[m].op else { continue };
            let rows_match = g
                .matmul_product(&g.nodes[m])
                .is_some_and(|[batch, rows, _, _]| batch == 1 && rows == g.desc(sums).len());
            let (early, late) = (m.min(s), m.max(s));
            let unread = g.nodes[early].outputs.iter().all(|o| u.first[o.0] > late);
            if !(rows_match && unread && u.inputs_kept(g, early, late)) {
                continue;
            }
            u.moved(g, early, late, None);
            let outputs = vec![g.nodes[m].outputs[0], sums];
            let inputs = g.nodes[m].inputs.clone();
            g.nodes[late] = Node { op: Op::MatMulRowSums { trans_a: true, trans_b }, inputs, outputs };
            removed[early] = true;
            fused += 1;
            break;
        }
    }
    drop_nodes(g, &removed);
    fused
}

/// The activation of an activation op, and whether it is the backward.
fn activation_of(op: &Op) -> Option<(Activation, bool)> {
    match *op {
        Op::Gelu { kind } => Some((Activation::Gelu(kind), false)),
        Op::GeluBwd { kind } => Some((Activation::Gelu(kind), true)),
        Op::Relu => Some((Activation::Relu, false)),
        Op::ReluBwd => Some((Activation::Relu, true)),
        Op::Silu => Some((Activation::Silu, false)),
        Op::SiluBwd => Some((Activation::Silu, true)),
        _ => None,
    }
}

/// The activation fusion (see the module doc); returns the nodes removed. The product moves to
/// the activation's place: nothing reads it before, and its inputs are kept. A dropout of the
/// activation (forward), or before its backward, is fused too.
pub fn activate_products(g: &mut Graph, pinned: &[TensorId]) -> usize {
    let pinned: HashSet<TensorId> = pinned.iter().copied().collect();
    let mut u = uses(g);
    let mut removed = vec![false; g.nodes.len()];
    let mut fused = 0;
    for i in 0..g.nodes.len() {
        let Some((act, backward)) = activation_of(&g.nodes[i].op) else { continue };
        // The forward reads the product (inputs [x]); the backward reads it as dy (inputs [x, dy]).
        let dy = g.nodes[i].inputs[backward as usize];
        let mut out = g.nodes[i].outputs[0];
        // The backward's dy may be the dropout's backward of a product.
        let dropped_dy = if backward { dropped_product(g, &u, &removed, &pinned, dy, true) } else { None };
        let product = dropped_dy.map_or(dy, |(d, _, _)| g.nodes[d].inputs[0]);
        let Some(m) = u.live_writer(product, &removed) else { continue };
        let Op::MatMul { trans_a, trans_b, bias, batched } = g.nodes[m].op else { continue };
        let floats = [product, out].iter().all(|&t| matches!(g.desc(t).dtype, Dtype::F32 | Dtype::F16));
        // The forward keeps the product (the backward reads it); the backward's is dropped.
        let readable = if backward {
            u.readers[product.0] == 1 && plain_float(g, &pinned, product)
        } else {
            u.first[product.0] == i
        };
        if !(floats && readable && !(backward && bias) && u.inputs_kept(g, m, i)) {
            continue;
        }
        u.moved(g, m, i, None);
        let mut inputs = g.nodes[m].inputs.clone();
        let (op, outputs) = if backward {
            inputs.push(g.nodes[i].inputs[0]);
            let drop = dropped_dy.map(|(d, _, drop)| {
                removed[d] = true;
                fused += 1;
                drop
            });
            (Op::MatMulActGrad { trans_a, trans_b, batched, act, drop }, vec![out])
        } else {
            // A dropout that alone reads the activation is applied in the same store.
            let drop = dropout_of(g, &u, &removed, &pinned, out).map(|(d, drop)| {
                removed[d] = true;
                fused += 1;
                out = g.nodes[d].outputs[0];
                drop
            });
            (Op::MatMulAct { trans_a, trans_b, bias, batched, act, drop }, vec![product, out])
        };
        g.nodes[i] = Node { op, inputs, outputs };
        removed[m] = true;
        fused += 1;
    }
    drop_nodes(g, &removed);
    fused
}

/// The live Dropout that is the one reader of the float activation `t`, with a float output:
/// (its node, the dropout).
fn dropout_of(
    g: &Graph,
    u: &Uses,
    removed: &[bool],
    pinned: &HashSet<TensorId>,
    t: TensorId,
) -> Option<(usize, ProductDropout)> {
    if u.readers[t.0] != 1 || !plain_float(g, pinned, t) {
        return None;
    }
    let d = (u.first[t.0]..g.nodes.len()).find(|&d| !removed[d] && g.nodes[d].inputs.contains(&t))?;
    match g.nodes[d].op {
        Op::Dropout { p, salt } if plain_float(g, pinned, g.nodes[d].outputs[0]) => {
            Some((d, ProductDropout::new(p, salt)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
