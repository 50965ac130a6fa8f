//! Memory planning: tensor lifetimes -> buffer slots. Tensors whose lifetimes do not overlap
//! share a slot; the largest tensors are placed first (greedy by size). No wgpu here.
//!
//! A tensor lives from the node that writes it to the last node that reads it, both inclusive,
//! so a node never reads and writes the same slot. Pinned tensors (parameters, inputs,
//! gradients the optimizer reads, outputs read back) get slots of their own.

use crate::graph::autodiff::Gradients;
use crate::graph::{Dtype, Graph, Role, TensorId};
use serde::Serialize;

/// Where every tensor of a graph lives.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Slot of each tensor, indexed by `TensorId.0`.
    pub slot_of: Vec<usize>,
    /// Size of each slot in bytes.
    pub slot_bytes: Vec<u64>,
    /// Bytes of all parameters.
    pub param_bytes: u64,
    /// Bytes of every slot that holds no parameter: the activations, gradients and inputs
    /// with reuse.
    pub peak_activation_bytes: u64,
    /// The same without reuse: every non-parameter tensor in its own buffer.
    pub naive_activation_bytes: u64,
}

fn bytes(g: &Graph, t: TensorId) -> u64 {
    let d = g.desc(t);
    d.dtype.bytes(d.len())
}

/// (first node, last node) during which each tensor must stay intact.
pub fn lifetimes(g: &Graph) -> Vec<(usize, usize)> {
    let mut life: Vec<(usize, usize)> = vec![(0, 0); g.tensors.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for o in &node.outputs {
            life[o.0] = (i, i);
        }
    }
    for (i, node) in g.nodes.iter().enumerate() {
        for t in &node.inputs {
            life[t.0].1 = life[t.0].1.max(i);
        }
    }
    life
}

/// For each tensor, the tensor whose buffer it is written in: itself, or for the output of an
/// in-place op (`Op::in_place`) the buffer of the input it overwrites (followed to the first).
pub fn buffer_roots(g: &Graph) -> Vec<usize> {
    let mut root: Vec<usize> = (0..g.tensors.len()).collect();
    for node in &g.nodes {
        if let Some((i, o)) = node.op.in_place(node.inputs.len()) {
            let acc = root[node.inputs[i].0];
            root[node.outputs[o].0] = acc;
        }
    }
    root
}

/// Gradients whose sums of squares one clipping dispatch computes (`kernels::clip`'s
/// `sumsq_many`: seven gradients and the partials, the 8 storage buffers every WebGPU adapter
/// binds).
pub const CLIP_SUMSQ_TENSORS: usize = 7;

/// Plans `g`, giving `pinned` tensors (and every parameter and input) slots of their own. The
/// output of an in-place op shares the slot of the input it overwrites: the two are planned as
/// one tensor living from the first's writer to the last reader of either.
pub fn plan(g: &Graph, pinned: &[TensorId]) -> Plan {
    let mut life = lifetimes(g);
    let n = g.tensors.len();
    let mut is_pinned = vec![false; n];
    for (i, t) in g.tensors.iter().enumerate() {
        is_pinned[i] = t.role != Role::Activation;
    }
    for t in pinned {
        is_pinned[t.0] = true;
    }
    // A tensor no node writes or reads (left by a fusion) fits beside anything.
    let mut touched = vec![false; n];
    for node in &g.nodes {
        node.inputs.iter().chain(&node.outputs).for_each(|t| touched[t.0] = true);
    }
    for i in (0..n).filter(|&i| !touched[i] && !is_pinned[i]) {
        life[i] = (usize::MAX, 0);
    }
    let root = buffer_roots(g);
    let mut size: Vec<u64> = (0..n).map(|i| bytes(g, TensorId(i))).collect();
    for i in (0..n).filter(|&i| root[i] != i) {
        let r = root[i];
        life[r] = (life[r].0.min(life[i].0), life[r].1.max(life[i].1));
        is_pinned[r] |= is_pinned[i];
        size[r] = size[r].max(size[i]);
    }
    let mut slot_of = vec![usize::MAX; n];
    let mut slot_bytes: Vec<u64> = Vec::new();
    // Intervals already placed in each shared slot.
    let mut shared: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    let mut order: Vec<usize> = (0..n).filter(|&i| root[i] == i).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(size[i]), i));
    for i in order {
        let b = size[i];
        if is_pinned[i] {
            slot_of[i] = slot_bytes.len();
            slot_bytes.push(b);
            continue;
        }
        let (s, e) = life[i];
        let free = shared.iter_mut().find(|(_, spans)| spans.iter().all(|&(a, z)| e < a || z < s));
        match free {
            Some((slot, spans)) => {
                spans.push((s, e));
                slot_of[i] = *slot;
            }
            None => {
                slot_of[i] = slot_bytes.len();
                shared.push((slot_bytes.len(), vec![(s, e)]));
                slot_bytes.push(b);
            }
        }
    }
    for i in 0..n {
        slot_of[i] = slot_of[root[i]];
    }
    let is_param = |i: usize| g.tensors[i].role == Role::Param;
    let param_bytes = (0..n).filter(|&i| is_param(i)).map(|i| bytes(g, TensorId(i))).sum();
    let naive_activation_bytes = (0..n).filter(|&i| !is_param(i)).map(|i| bytes(g, TensorId(i))).sum();
    let mut param_slot = vec![false; slot_bytes.len()];
    for i in (0..n).filter(|&i| is_param(i)) {
        param_slot[slot_of[i]] = true;
    }
    let peak_activation_bytes = slot_bytes.iter().zip(&param_slot).filter(|(_, &p)| !p).map(|(b, _)| b).sum();
    Plan { slot_of, slot_bytes, param_bytes, peak_activation_bytes, naive_activation_bytes }
}

/// The tensors a training step must keep to itself: the loss (read back) and every
/// parameter gradient (read by the optimizer after the backward).
pub fn training_pinned(loss: Option<TensorId>, grads: Option<&Gradients>) -> Vec<TensorId> {
    let mut pinned: Vec<TensorId> = loss.into_iter().collect();
    if let Some(g) = grads {
        let mut ids: Vec<TensorId> = g.of.values().copied().collect();
        ids.sort();
        pinned.extend(ids);
    }
    pinned
}

/// What `wgformer plan` prints: the cost of one training step of a graph.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlanReport {
    pub nodes: usize,
    pub dispatches_per_step: usize,
    /// Of those, the forward and backward's (the rest are the optimizer's: clipping and Adam).
    pub forward_backward_dispatches: usize,
    /// The forward and backward's dispatches by op name, most first.
    pub dispatches_by_op: Vec<(String, usize)>,
    /// Products run with K in splits (each one more dispatch: the partial products' sum).
    pub split_k_products: usize,
    /// The scratch their partial products take: one buffer, the largest's, shared by all.
    pub split_k_scratch_bytes: u64,
    /// Bytes the forward and backward's nodes read and write, each tensor counted once per node
    /// that reads or writes it (what reaches memory at the least, with no cache reuse).
    pub forward_backward_bytes: u64,
    /// The optimizer's: clipping reads every gradient, Adam reads parameter, gradient and both
    /// moments and writes parameter and moments.
    pub optimizer_bytes_moved: u64,
    pub submits_per_step: usize,
    pub param_bytes: u64,
    /// Adam's two moments.
    pub optimizer_bytes: u64,
    /// The parameters' gradients (each in a buffer of its own, read by the optimizer).
    pub gradient_bytes: u64,
    /// Every other buffer of the step: activations, inputs and the other gradients, with reuse.
    pub peak_activation_bytes: u64,
    /// The most bytes of those alive at once (at one node): what any plan needs at least, so
    /// `peak_activation_bytes` minus this is what the slot plan loses to fragmentation.
    pub live_activation_bytes: u64,
    /// The same without reuse.
    pub naive_activation_bytes: u64,
}

/// Plans a training step of `g` (forward, backward, gradient clipping, Adam) and reports it,
/// every product in one dispatch (as on CPU adapters).
pub fn report(g: &Graph, loss: TensorId, grads: &Gradients) -> PlanReport {
    report_with_splits(g, loss, grads, |_| 1)
}

/// [`report`] where the f32 products run with K in as many splits as `splits` says (the
/// matmul's rule on GPUs: `kernels::matmul::default_gpu_splits`).
pub fn report_with_splits(
    g: &Graph,
    loss: TensorId,
    grads: &Gradients,
    splits: impl Fn(&crate::graph::MatmulShape) -> usize,
) -> PlanReport {
    let p = plan(g, &training_pinned(Some(loss), Some(grads)));
    let gradient_bytes: u64 = grads.of.values().map(|&t| bytes(g, t)).sum();
    let param_gradients: std::collections::HashSet<TensorId> = grads.of.values().copied().collect();
    let updates = g.params().iter().filter(|&&t| grads.get(t).is_some()).count();
    // Per parameter: one sum of squares and one Adam update; plus the clipping factor.
    let forward_backward = g.nodes.iter().map(|n| n.op.dispatches()).sum::<usize>();
    let mut by_op: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &g.nodes {
        *by_op.entry(n.op.name()).or_default() += n.op.dispatches();
    }
    // Split products: f32 ones (the f16 kernels run whole), one sum dispatch each.
    let split: Vec<(crate::graph::MatmulShape, usize)> = g
        .nodes
        .iter()
        .filter(|n| g.desc(n.inputs[0]).dtype == Dtype::F32)
        .filter_map(|n| g.product_shape(n))
        .map(|s| (s, splits(&s)))
        .filter(|&(_, k)| k > 1)
        .collect();
    if !split.is_empty() {
        by_op.insert("matmul_reduce_splits", split.len());
    }
    let split_k_scratch_bytes = split.iter().map(|(s, k)| (s.batch * k * s.m * s.n * 4) as u64).max().unwrap_or(0);
    let forward_backward = forward_backward + split.len();
    let mut dispatches_by_op: Vec<(String, usize)> = by_op.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // Split products also write their partials and read them back in the sum.
    let partial_bytes: u64 = split.iter().map(|(s, k)| 2 * (s.batch * k * s.m * s.n * 4) as u64).sum();
    let forward_backward_bytes = partial_bytes
        + g.nodes.iter().flat_map(|n| n.inputs.iter().chain(&n.outputs)).map(|&t| bytes(g, t)).sum::<u64>();
    let trained_bytes: u64 = g.params().iter().filter(|&&t| grads.get(t).is_some()).map(|&t| bytes(g, t)).sum();
    dispatches_by_op.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    PlanReport {
        nodes: g.nodes.len(),
        // Adam per parameter; clipping's sums of squares in groups, then its scale.
        dispatches_per_step: forward_backward + updates + updates.div_ceil(CLIP_SUMSQ_TENSORS) + 1,
        forward_backward_dispatches: forward_backward,
        dispatches_by_op,
        split_k_products: split.len(),
        split_k_scratch_bytes,
        forward_backward_bytes,
        optimizer_bytes_moved: 8 * trained_bytes,
        submits_per_step: 1,
        param_bytes: p.param_bytes,
        optimizer_bytes: 2 * p.param_bytes,
        gradient_bytes,
        peak_activation_bytes: p.peak_activation_bytes - gradient_bytes,
        live_activation_bytes: live_peak(g, |t| g.desc(t).role == Role::Param || param_gradients.contains(&t)),
        naive_activation_bytes: p.naive_activation_bytes - gradient_bytes,
    }
}

/// The most bytes of tensors alive at one node, leaving out those `skip` names.
fn live_peak(g: &Graph, skip: impl Fn(TensorId) -> bool) -> u64 {
    let mut delta = vec![0i64; g.nodes.len() + 1];
    for (i, (start, end)) in lifetimes(g).into_iter().enumerate() {
        let t = TensorId(i);
        if skip(t) {
            continue;
        }
        let b = bytes(g, t) as i64;
        delta[start] += b;
        delta[end + 1] -= b;
    }
    let mut live = 0i64;
    delta
        .iter()
        .map(|d| {
            live += d;
            live
        })
        .max()
        .unwrap_or(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GeluKind;
    use crate::graph::{Dtype, Graph};

    /// A chain x -> 5 x (linear, gelu) with a loss: forward activations die as they are consumed.
    fn chain() -> (Graph, TensorId) {
        let mut g = Graph::new();
        let mut x = g.input("x", &[16, 32], Dtype::F32);
        let y = g.input("y", &[16], Dtype::U32);
        for i in 0..5 {
            let w = g.param(&format!("w{i}"), &[32, 32]);
            x = g.linear(x, w, None).unwrap();
            x = g.gelu(x, GeluKind::Exact).unwrap();
        }
        let loss = g.cross_entropy(x, y, 0.0, None).unwrap();
        (g, loss)
    }

    #[test]
    fn no_two_live_tensors_share_a_slot() {
        let (mut g, loss) = chain();
        let grads = crate::graph::autodiff::backward(&mut g, loss).unwrap();
        let pinned: Vec<TensorId> = grads.of.values().copied().chain([loss]).collect();
        let p = plan(&g, &pinned);
        let life = lifetimes(&g);
        for a in 0..g.tensors.len() {
            assert!(p.slot_bytes[p.slot_of[a]] >= bytes(&g, TensorId(a)), "slot too small for {}", g.tensors[a].name);
            for b in a + 1..g.tensors.len() {
                if p.slot_of[a] == p.slot_of[b] {
                    let ((s1, e1), (s2, e2)) = (life[a], life[b]);
                    assert!(
                        e1 < s2 || e2 < s1,
                        "{} and {} overlap in slot {}",
                        g.tensors[a].name,
                        g.tensors[b].name,
                        p.slot_of[a]
                    );
                }
            }
        }
        for t in pinned.iter().chain(g.params().iter()) {
            let shared = (0..g.tensors.len()).filter(|&o| p.slot_of[o] == p.slot_of[t.0]).count();
            assert_eq!(shared, 1, "pinned {} shares its slot", g.desc(*t).name);
        }
    }

    #[test]
    fn reuse_lowers_the_peak() {
        let (mut g, loss) = chain();
        crate::graph::autodiff::backward(&mut g, loss).unwrap();
        let p = plan(&g, &[loss]);
        assert!(
            p.peak_activation_bytes < p.naive_activation_bytes / 2,
            "{} vs {}",
            p.peak_activation_bytes,
            p.naive_activation_bytes
        );
        assert_eq!(p.param_bytes, 5 * 32 * 32 * 4);
    }

    #[test]
    fn a_node_never_reads_the_slot_it_writes() {
        let (mut g, loss) = chain();
        crate::graph::autodiff::backward(&mut g, loss).unwrap();
        let p = plan(&g, &[loss]);
        for node in &g.nodes {
            for o in &node.outputs {
                for i in &node.inputs {
                    assert_ne!(p.slot_of[o.0], p.slot_of[i.0], "{} reads and writes one slot", node.op.name());
                }
            }
        }
    }

    #[test]
    fn the_live_peak_counts_tensors_alive_at_one_node() {
        // x (input) -> linear -> gelu -> gelu: at every node two (4, 8) f32 tensors are alive,
        // while the plan gives the input a buffer of its own (three buffers).
        let mut g = Graph::new();
        let x = g.input("x", &[4, 8], Dtype::F32);
        let w = g.param("w", &[8, 8]);
        let y = g.linear(x, w, None).unwrap();
        let z = g.gelu(y, GeluKind::Exact).unwrap();
        g.gelu(z, GeluKind::Exact).unwrap();
        let one = 4 * 8 * 4;
        assert_eq!(live_peak(&g, |t| g.desc(t).role == Role::Param), 2 * one);
        assert_eq!(plan(&g, &[]).peak_activation_bytes, 3 * one);
    }

    #[test]
    fn split_products_add_a_dispatch_each_and_their_partials() {
        let (mut g, loss) = chain();
        let grads = crate::graph::autodiff::backward(&mut g, loss).unwrap();
        let whole = report(&g, loss, &grads);
        // Split the weight gradients (op(A) = dY^T: 32 x 32 x 16) in 4.
        let split = report_with_splits(&g, loss, &grads, |s| if s.trans_a && s.m == 32 { 4 } else { 1 });
        assert_eq!(split.split_k_products, 5);
        assert_eq!(split.forward_backward_dispatches, whole.forward_backward_dispatches + 5);
        assert_eq!(split.dispatches_per_step, whole.dispatches_per_step + 5);
        assert_eq!(split.split_k_scratch_bytes, 4 * 32 * 32 * 4);
        assert_eq!(split.forward_backward_bytes, whole.forward_backward_bytes + 5 * 2 * 4 * 32 * 32 * 4);
        assert!(split.dispatches_by_op.contains(&("matmul_reduce_splits".to_string(), 5)));
        assert_eq!((whole.split_k_products, whole.split_k_scratch_bytes), (0, 0));
    }
}
