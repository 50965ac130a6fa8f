//! The chain fusion (`graph::fuse::fuse_chains`) on small graphs: which elementwise nodes
//! become one chain, which values a chain writes, where a chain must stop, and that the fused
//! graph computes the same values, bit for bit, in the reference.

use wgformer::graph::autodiff::backward;
use wgformer::graph::fuse::{fuse, fuse_chains};
use wgformer::graph::{Dtype, Graph, Op, TensorId};

/// A Transformer's embedding: scaled, a position table added (repeated over the batch), dropped.
fn embedded_tokens(g: &mut Graph) -> (TensorId, TensorId) {
    let ids = g.input("ids", &[2, 4], Dtype::U32);
    let targets = g.input("targets", &[2, 4], Dtype::U32);
    let (table, pos) = (g.param("table", &[6, 8]), g.input("pos", &[4, 8], Dtype::F32));
    let x = g.embedding(table, ids).unwrap();
    let x = g.scale(x, 8f32.sqrt()).unwrap();
    let x = g.add(x, pos).unwrap();
    (g.dropout(x, 0.25).unwrap(), targets)
}

/// Every tensor's values from the reference, inputs and parameters filled with small numbers.
fn reference_values(g: &Graph, seed: u32) -> Vec<Vec<f32>> {
    let mut values: Vec<Vec<f32>> = g
        .tensors
        .iter()
        .enumerate()
        .map(|(t, d)| match d.dtype {
            Dtype::U32 => (0..d.len()).map(|i| ((i * 7 + t) % 4) as f32).collect(),
            _ => (0..d.len()).map(|i| (((i * 37 + t * 11) % 29) as f32 - 14.0) / 9.0).collect(),
        })
        .collect();
    wgformer::reference::graph::evaluate_seeded(g, &mut values, seed);
    values
}

#[test]
fn elementwise_nodes_reading_one_another_run_as_one_chain_with_the_same_values() {
    let mut g = Graph::default();
    let (x, targets) = embedded_tokens(&mut g);
    let w = g.param("w", &[4, 8]);
    let y = g.linear(x, w, None).unwrap();
    let loss = g.cross_entropy(y, targets, 0.1, None).unwrap();
    let grads = backward(&mut g, loss).unwrap();
    let pinned = wgformer::graph::plan::training_pinned(Some(loss), Some(&grads));
    let unfused = g.clone();
    let saved = fuse(&mut g, &pinned);
    assert_eq!(g.nodes.len(), unfused.nodes.len() - saved);
    let count = |name: &str| g.nodes.iter().filter(|n| n.op.name() == name).count();
    // Forward: scale, add and dropout; backward: dropout's backward and the scale.
    assert_eq!(count("elementwise_chain"), 2);
    assert_eq!((count("scale"), count("add"), count("dropout"), count("dropout_bwd")), (0, 0, 0, 0));
    let chains: Vec<usize> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Elementwise(c) => Some(c.steps.len()),
            _ => None,
        })
        .collect();
    assert_eq!(chains, [3, 2]);
    // The fused graph computes every pinned tensor (the loss, the gradients) bit for bit.
    let (before, after) = (reference_values(&unfused, 9), reference_values(&g, 9));
    for t in &pinned {
        assert_eq!(before[t.0], after[t.0], "{}", g.desc(*t).name);
    }
}

#[test]
fn a_chain_writes_values_read_after_it_and_stops_at_a_value_read_before() {
    let mut g = Graph::default();
    let x = g.input("x", &[4, 8], Dtype::F32);
    let targets = g.input("y", &[4], Dtype::U32);
    let w = g.param("w", &[8, 8]);
    let a = g.scale(x, 0.5).unwrap();
    let b = g.relu(a).unwrap();
    let c = g.add(b, a).unwrap(); // reads a again: a stays in the chain as a value
    let h = g.linear(c, w, None).unwrap(); // reads c before the next elementwise node
    let d = g.silu(c).unwrap();
    let y = g.add(h, d).unwrap();
    let y = g.mul(y, b).unwrap(); // reads b after the chain: the chain writes it
    let loss = g.cross_entropy(y, targets, 0.0, None).unwrap();
    let mut pinned = vec![loss];
    pinned.extend([y]);
    let unfused = g.clone();
    fuse_chains(&mut g, &pinned);
    let chains: Vec<(usize, usize)> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Elementwise(c) => Some((c.steps.len(), n.outputs.len())),
            _ => None,
        })
        .collect();
    // scale, relu, add (writing b and c); then silu, add, mul (writing y).
    assert_eq!(chains, [(3, 2), (3, 1)]);
    let (before, after) = (reference_values(&unfused, 1), reference_values(&g, 1));
    assert_eq!(before[loss.0], after[loss.0]);
}

/// Every chain op's generated WGSL validates with naga, with f32 and f16 tensors and a
/// repeating input (the kernel tests compile the forms their adapters can run).
#[test]
fn generated_chain_forms_validate() {
    use wgformer::gpu::DType;
    use wgformer::graph::chain::{Chain, ChainOp, ChainStep};
    use wgformer::graph::{Activation, GeluKind, ProductDropout};
    let unary = [
        ChainOp::Scale(2.0),
        ChainOp::Act(Activation::Gelu(GeluKind::Exact)),
        ChainOp::Act(Activation::Gelu(GeluKind::Tanh)),
        ChainOp::Act(Activation::Relu),
        ChainOp::Act(Activation::Silu),
        ChainOp::Dropout(ProductDropout::new(0.1, 3)),
        ChainOp::RoundF16,
    ];
    let binary = [
        ChainOp::Add,
        ChainOp::Mul,
        ChainOp::ActGrad(Activation::Gelu(GeluKind::Exact)),
        ChainOp::ActGrad(Activation::Relu),
        ChainOp::ActGrad(Activation::Silu),
    ];
    let mut steps: Vec<ChainStep> = unary.iter().map(|&op| ChainStep { op, args: vec![0], round: false }).collect();
    steps.extend(binary.iter().map(|&op| ChainStep { op, args: vec![1, 2], round: true }));
    let chain = Chain { inputs: 2, outputs: vec![2, 2 + steps.len() - 1], steps };
    for (ins, outs) in [([DType::F32; 2], [DType::F32; 2]), ([DType::F16, DType::F32], [DType::F32, DType::F16])] {
        let form = wgformer::kernels::chain::chain_form(&chain, &ins, &[false, true], &outs).unwrap();
        wgformer::shaders::validate("elementwise_chain.wgsl", &form.source).unwrap();
    }
}
