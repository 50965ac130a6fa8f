//! The fusions on small graphs: what each rewrites, and what it must leave alone.

use super::*;
use crate::graph::autodiff::backward;

/// A layer whose input feeds three products, as q, k and v do: its gradient is their sum.
fn three_products() -> (Graph, TensorId, crate::graph::autodiff::Gradients) {
    let mut g = Graph::default();
    let x = g.input("x", &[4, 8], Dtype::F32);
    let targets = g.input("y", &[4], Dtype::U32);
    let w: Vec<TensorId> = (0..3).map(|i| g.param(&format!("w{i}"), &[8, 8])).collect();
    let h = g.linear(x, w[0], None).unwrap();
    let h = g.gelu(h, crate::graph::params::GeluKind::Tanh).unwrap();
    let ys: Vec<TensorId> = w.iter().map(|&w| g.linear(h, w, None).unwrap()).collect();
    let s = g.add(ys[0], ys[1]).unwrap();
    let s = g.add(s, ys[2]).unwrap();
    let loss = g.cross_entropy(s, targets, 0.0, None).unwrap();
    let grads = backward(&mut g, loss).unwrap();
    (g, loss, grads)
}

#[test]
fn the_sum_of_products_in_a_backward_pass_is_accumulated_in_place() {
    let (mut g, loss, grads) = three_products();
    let pinned = crate::graph::plan::training_pinned(Some(loss), Some(&grads));
    let before = g.nodes.len();
    let fused = fuse(&mut g, &pinned);
    assert!(fused >= 2, "{fused} adds fused");
    assert_eq!(g.nodes.len(), before - fused);
    let roots = crate::graph::plan::buffer_roots(&g);
    let plan = crate::graph::plan::plan(&g, &pinned);
    for node in g.nodes.iter().filter(|n| matches!(n.op, Op::MatMulAcc { .. })) {
        let acc = *node.inputs.last().unwrap();
        assert_eq!(plan.slot_of[acc.0], plan.slot_of[node.outputs[0].0]);
        assert_eq!(roots[node.outputs[0].0], roots[acc.0]);
    }
}

/// A residual block of two linear layers with bias and GELU between: the residual Add, the
/// bias gradients and GELU forward and backward all run in products.
/// `g` with a cross-entropy loss of `y`, differentiated and fused (every fusion a node less).
fn fused_training_graph(mut g: Graph, y: TensorId, targets: TensorId) -> Graph {
    let loss = g.cross_entropy(y, targets, 0.0, None).unwrap();
    let grads = backward(&mut g, loss).unwrap();
    let pinned = crate::graph::plan::training_pinned(Some(loss), Some(&grads));
    let before = g.nodes.len();
    let fused = fuse(&mut g, &pinned);
    assert_eq!(g.nodes.len(), before - fused);
    g
}

#[test]
fn residuals_bias_gradients_and_activations_run_in_products() {
    let mut g = Graph::default();
    let x = g.input("x", &[4, 8], Dtype::F32);
    let targets = g.input("y", &[4], Dtype::U32);
    let (w1, b1) = (g.param("w1", &[8, 8]), g.param("b1", &[8]));
    let (w2, b2) = (g.param("w2", &[8, 8]), g.param("b2", &[8]));
    let h = g.linear(x, w1, Some(b1)).unwrap();
    let h = g.gelu(h, crate::graph::params::GeluKind::Exact).unwrap();
    let y = g.linear(h, w2, Some(b2)).unwrap();
    let y = g.add(y, x).unwrap();
    let g = fused_training_graph(g, y, targets);
    let count = |name: &str| g.nodes.iter().filter(|n| n.op.name() == name).count();
    assert_eq!((count("matmul_row_sums"), count("sum_rows")), (2, 0));
    assert_eq!((count("matmul_act"), count("matmul_act_grad")), (1, 1));
    assert_eq!((count("gelu"), count("gelu_bwd")), (0, 0));
    assert_eq!((count("matmul_residual"), count("add")), (1, 0));
}

/// The same block with a dropout after GELU and one before the residual Add (as in the
/// Transformer): both dropouts run in the products' stores, and the first's backward too.
#[test]
fn dropouts_between_products_and_their_sums_or_activations_run_in_products() {
    let mut g = Graph::default();
    let x = g.input("x", &[4, 8], Dtype::F32);
    let targets = g.input("y", &[4], Dtype::U32);
    let (w1, w2) = (g.param("w1", &[8, 8]), g.param("w2", &[8, 8]));
    let h = g.linear(x, w1, None).unwrap();
    let h = g.relu(h).unwrap();
    let h = g.dropout(h, 0.25).unwrap();
    let y = g.linear(h, w2, None).unwrap();
    let y = g.dropout(y, 0.5).unwrap();
    let y = g.add(x, y).unwrap();
    let g = fused_training_graph(g, y, targets);
    let count = |name: &str| g.nodes.iter().filter(|n| n.op.name() == name).count();
    assert_eq!((count("dropout"), count("relu"), count("relu_bwd"), count("add")), (0, 0, 0, 0));
    // The residual's dropout backward stays: its gradient feeds two products.
    assert_eq!(count("dropout_bwd"), 1);
    let drop_of = |name: &str| g.nodes.iter().find(|n| n.op.name() == name).and_then(|n| n.op.product_dropout());
    assert_eq!(drop_of("matmul_act").map(|d| d.p()), Some(0.25));
    assert_eq!(drop_of("matmul_act_grad").map(|d| d.p()), Some(0.25));
    assert_eq!(drop_of("matmul_residual").map(|d| d.p()), Some(0.5));
}

#[test]
fn pinned_tensors_and_products_read_twice_are_left_alone() {
    let (mut g, loss, grads) = three_products();
    let adds: Vec<TensorId> = g.nodes.iter().filter(|n| n.op == Op::Add).flat_map(|n| n.inputs.clone()).collect();
    let mut pinned = crate::graph::plan::training_pinned(Some(loss), Some(&grads));
    pinned.extend(adds);
    assert_eq!(accumulate_products(&mut g, &pinned) + add_residuals(&mut g, &pinned), 0);
}
