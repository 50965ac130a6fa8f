//! Mixed precision as a graph rewrite (`Graph::cast_products_to_f16`) on the GPU, for both
//! storages (f16 tensors and the f16 matmul; f16 values in f32 tensors and the f32 matmul):
//! every node of the cast graphs matches the CPU reference computed from the GPU's own inputs,
//! (the fused products among them reading and writing f16 tensors), and a whole step's loss and
//! gradients match the reference's run of the same graph; and the
//! planned activation memory of the big presets in f16 (CPU only).

use crate::common;
use common::{assert_close, for_each_gpu, random_values};
use wgformer::graph::autodiff::backward;
use wgformer::graph::{Dtype, F16Storage, Op, Role, TensorId};
use wgformer::kernels::f16_forms::HalfTable;
use wgformer::reference::graph::evaluate;
use wgformer::runtime::exec::{Executor, HostData, StepOptions};

/// An executor of `t`'s graph with random parameters and inputs from `seed` and its targets
/// set, and those values (the targets as f32) for the reference.
fn executor_with_values(
    gpu: &wgformer::Gpu,
    t: &common::graphs::TestGraph,
    grads: &wgformer::graph::autodiff::Gradients,
    seed: u64,
) -> (Executor, Vec<Vec<f32>>) {
    let mut values = random_values(&t.graph, seed);
    for (id, v) in &t.targets {
        values[id.0] = v.iter().map(|&x| x as f32).collect();
    }
    let exec = Executor::new(gpu, t.graph.clone(), Some(t.loss), Some(grads)).unwrap();
    for (k, d) in t.graph.tensors.iter().enumerate() {
        if d.role != Role::Activation && d.dtype == Dtype::F32 {
            exec.set(gpu, TensorId(k), HostData::F32(&values[k])).unwrap();
        }
    }
    for (id, v) in &t.targets {
        exec.set(gpu, *id, HostData::U32(v)).unwrap();
    }
    (exec, values)
}

#[test]
fn cast_graphs_match_the_reference() {
    for_each_gpu(|gpu| {
        if !gpu.caps.f16 {
            eprintln!("skipped on {}: no f16 shaders", gpu.describe());
            return;
        }
        for storage in [F16Storage::Half, F16Storage::RoundedF32] {
            let (mut half_products, mut half_activations) = (0, 0);
            for (i, (name, mut t)) in common::graphs::all().into_iter().enumerate() {
                let label = format!("{name} ({storage:?})");
                let grads = backward(&mut t.graph, t.loss).unwrap();
                let casts = t.graph.cast_products_to_f16(storage, &HalfTable);
                let products = t.graph.nodes.iter().filter(|n| matches!(n.op, Op::MatMul { .. })).count();
                assert!(casts > 0 || products == 0, "{label}: no casts");
                // Products kept in f16 for GELU or ReLU: f16 tensors, or rounded right after.
                half_products += t
                    .graph
                    .nodes
                    .iter()
                    .filter(|n| match n.op {
                        Op::MatMul { .. } => t.graph.desc(n.outputs[0]).dtype == Dtype::F16,
                        Op::CastF16 => {
                            t.graph.producer(n.inputs[0]).is_some_and(|(_, p)| matches!(p.op, Op::MatMul { .. }))
                        }
                        _ => false,
                    })
                    .count();
                // The executor fuses activations into f16 products too: count those it will run.
                let mut fused = t.graph.clone();
                let pinned = wgformer::graph::plan::training_pinned(Some(t.loss), Some(&grads));
                wgformer::graph::fuse::fuse(&mut fused, &pinned);
                half_activations += fused
                    .nodes
                    .iter()
                    .filter(|n| matches!(n.op, Op::MatMulAct { .. } | Op::MatMulActGrad { .. }))
                    .filter(|n| n.inputs.iter().chain(&n.outputs).skip(2).any(|&x| fused.desc(x).dtype == Dtype::F16))
                    .count();
                let (exec, mut values) = executor_with_values(gpu, &t, &grads, 20 + i as u64);
                exec.check_nodes(gpu, 0, 1e-5, 1e-3).unwrap_or_else(|e| panic!("{label}: {e}"));
                let loss = exec.step(gpu, &[], &StepOptions::default()).unwrap();
                evaluate(&t.graph, &mut values);
                // f32 sums in another order can round an operand to the neighbouring f16 value:
                // an error of f16's resolution (1e-3), relative to the gradient's scale.
                assert_close(&format!("{label} loss"), &[loss], &values[t.loss.0], 1e-4, 2e-3);
                for (p, grad) in &grads.of {
                    let want = &values[grad.0];
                    let scale = want.iter().fold(1e-3f32, |m, x| m.max(x.abs())) as f64;
                    let got = exec.read(gpu, *grad).unwrap();
                    assert_close(&format!("{label} grad {}", t.graph.desc(*p).name), &got, want, 4e-3 * scale, 0.0);
                }
            }
            assert!(half_products > 0, "{storage:?}: no graph keeps a product in f16");
            if storage == F16Storage::Half {
                assert!(half_activations > 0, "no activation fused into a product of f16 tensors");
            }
        }
    });
}

/// Parameters cast once per step (`WGFORMER_F16_WEIGHT_CASTS=once`) give the step the same loss
/// and gradients, bit for bit, as casts before each product (a cast is exact either way), with
/// fewer casts; the checked mode passes on the graph.
#[test]
fn weights_cast_once_per_step_train_as_casts_per_product() {
    use wgformer::settings::F16WeightCasts;
    for_each_gpu(|gpu| {
        if !gpu.caps.f16 {
            eprintln!("skipped on {}: no f16 shaders", gpu.describe());
            return;
        }
        let storage = if gpu.is_cpu() { F16Storage::RoundedF32 } else { F16Storage::Half };
        for (i, (name, base)) in common::graphs::all().into_iter().enumerate().take(3) {
            let mut results = Vec::new();
            for weights in [F16WeightCasts::PerProduct, F16WeightCasts::OncePerStep] {
                let mut t = base.clone();
                let grads = backward(&mut t.graph, t.loss).unwrap();
                let table = &HalfTable;
                t.graph.cast_products_to_f16_with(storage, weights, table);
                let casts = t.graph.nodes.iter().filter(|n| n.op == Op::CastF16).count();
                let (exec, _) = executor_with_values(gpu, &t, &grads, 40 + i as u64);
                if weights == F16WeightCasts::OncePerStep {
                    exec.check_nodes(gpu, 0, 1e-5, 1e-3).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                let loss = exec.step(gpu, &[], &StepOptions::default()).unwrap();
                let mut grad_values: Vec<(TensorId, Vec<f32>)> =
                    grads.of.iter().map(|(p, g)| (*p, exec.read(gpu, *g).unwrap())).collect();
                grad_values.sort_by_key(|(p, _)| p.0);
                results.push((casts, loss, grad_values));
            }
            let (per_product, once) = (&results[0], &results[1]);
            assert!(once.0 < per_product.0, "{name}: {} casts once per step, {} per product", once.0, per_product.0);
            assert_eq!(once.1.to_bits(), per_product.1.to_bits(), "{name}: loss");
            assert!(once.2 == per_product.2, "{name}: gradients differ");
        }
    });
}

/// Every f16 tensor of a cast graph is written by a kernel form that writes f16 and read only by
/// forms that read it (what `Executor::new` would otherwise refuse at the first mismatched
/// dispatch), on the test graphs and both models; and in the ViT the gradients flow in f16
/// where the issue asks: the cross-entropy's gradient and GELU's backward. No GPU.
#[test]
fn f16_tensors_sit_only_where_kernels_have_f16_forms() {
    use wgformer::graph::{Graph, HalfKernels};
    use wgformer::models::{transformer, vit};
    let check = |label: &str, g: &Graph| {
        for node in &g.nodes {
            for (pos, t) in node.inputs.iter().enumerate() {
                if g.desc(*t).dtype == Dtype::F16 {
                    assert!(
                        HalfTable.reads_half(&node.op, pos),
                        "{label}: {} reads f16 {}",
                        node.op.name(),
                        g.desc(*t).name
                    );
                }
            }
            for (pos, t) in node.outputs.iter().enumerate() {
                if g.desc(*t).dtype == Dtype::F16 {
                    let ok = node.op == Op::CastF16 || HalfTable.writes_half(&node.op, pos);
                    assert!(ok, "{label}: {} writes f16 {}", node.op.name(), g.desc(*t).name);
                }
            }
        }
    };
    for (name, mut t) in common::graphs::all() {
        backward(&mut t.graph, t.loss).unwrap();
        t.graph.cast_products_to_f16(F16Storage::Half, &HalfTable);
        check(name, &t.graph);
    }
    let v = vit::build(&vit::VitConfig::preset("vit-tiny").unwrap(), 2, true).unwrap();
    let mut g = v.graph;
    backward(&mut g, v.loss).unwrap();
    g.cast_products_to_f16(F16Storage::Half, &HalfTable);
    check("vit-tiny", &g);
    let half_output = |op: &str, pos: usize| {
        g.nodes.iter().filter(|n| n.op.name() == op).all(|n| g.desc(n.outputs[pos]).dtype == Dtype::F16)
    };
    assert!(half_output("cross_entropy", 1), "the ViT's dlogits are f32");
    assert!(half_output("gelu", 0) && half_output("gelu_bwd", 0), "GELU's output or gradient is f32");
    assert!(half_output("attention", 0), "attention's output is f32");
    assert!((0..3).all(|k| half_output("attention_bwd", k)), "attention's gradients are f32");
    let t = transformer::build(&transformer::TransformerConfig::preset_or_file("small", 1000).unwrap(), 2, 7, 9, true)
        .unwrap();
    let mut g = t.graph;
    backward(&mut g, t.loss).unwrap();
    g.cast_products_to_f16(F16Storage::Half, &HalfTable);
    check("transformer small", &g);
}

/// The figures the README gives for `wgformer plan --precision f16`: activations of vit-base at
/// batch 8 and of transformer-base at batch 32 (pairs of 32 tokens) against f32. No GPU.
#[test]
fn f16_storage_plans_under_three_fifths_and_two_thirds_of_f32() {
    use wgformer::graph::plan::report;
    use wgformer::models::{transformer, vit};
    let ratio = |mut g: wgformer::graph::Graph, loss| {
        let grads = backward(&mut g, loss).unwrap();
        let f32_bytes = report(&g, loss, &grads).peak_activation_bytes;
        g.cast_products_to_f16(F16Storage::Half, &HalfTable);
        report(&g, loss, &grads).peak_activation_bytes as f64 / f32_bytes as f64
    };
    let v = vit::build(&vit::VitConfig::preset("vit-base").unwrap(), 8, true).unwrap();
    let vit_ratio = ratio(v.graph, v.loss);
    let t = transformer::build(&transformer::TransformerConfig::base(37000), 32, 32, 32, true).unwrap();
    let transformer_ratio = ratio(t.graph, t.loss);
    eprintln!("f16 / f32 activations: vit-base {vit_ratio:.3}, transformer-base {transformer_ratio:.3}");
    assert!(vit_ratio < 0.60, "vit-base: {vit_ratio}");
    assert!(transformer_ratio < 0.65, "transformer-base: {transformer_ratio}");
}

/// The rewrite on a small graph, without a GPU.
mod rewrite {
    use super::HalfTable;
    use wgformer::graph::{Dtype, F16Storage, GeluKind, Graph, Node, Op, Role};

    /// x -> linear -> gelu -> linear, plus the products a backward would add: gelu's output
    /// read again for a weight gradient, the second weight again for an input gradient.
    fn mlp() -> Graph {
        let mut g = Graph::new();
        let x = g.input("x", &[8, 16], Dtype::F32);
        let (w1, w2) = (g.param("w1", &[32, 16]), g.param("w2", &[4, 32]));
        let h = g.linear(x, w1, None).unwrap();
        let a = g.gelu(h, GeluKind::Exact).unwrap();
        let out = g.linear(a, w2, None).unwrap();
        let _dw2 = g.matmul(a, out, true, false).unwrap();
        let da = g.matmul(out, w2, false, false).unwrap();
        g.sum_rows(da).unwrap();
        g
    }

    #[test]
    fn every_product_reads_f16_and_only_products_read_casts() {
        let mut g = mlp();
        let products = g.nodes.iter().filter(|n| matches!(n.op, Op::MatMul { .. })).count();
        let casts = g.cast_products_to_f16(F16Storage::Half, &HalfTable);
        assert!(casts > 0 && casts <= 2 * products);
        for node in &g.nodes {
            if let Op::MatMul { .. } = node.op {
                for t in &node.inputs[..2] {
                    assert_eq!(g.desc(*t).dtype, Dtype::F16, "{} reads f32", g.desc(*t).name);
                }
            }
        }
        // Every input of every node is made before it (execution order kept).
        let mut made: Vec<bool> = g.tensors.iter().map(|t| t.role != Role::Activation).collect();
        for node in &g.nodes {
            assert!(node.inputs.iter().all(|t| made[t.0]), "{} reads a later tensor", node.op.name());
            node.outputs.iter().for_each(|o| made[o.0] = true);
        }
        assert_eq!(g.cast_products_to_f16(F16Storage::Half, &HalfTable), 0, "a second call casts again");
        // The first layer's product, read only by GELU, is written in f16.
        let gelu = g.nodes.iter().find(|n| matches!(n.op, Op::Gelu { .. })).unwrap();
        assert_eq!(g.desc(gelu.inputs[0]).dtype, Dtype::F16);
    }

    #[test]
    fn rounded_storage_rounds_products_that_gelu_reads_right_after_them() {
        let mut g = mlp();
        g.cast_products_to_f16(F16Storage::RoundedF32, &HalfTable);
        let at = g.nodes.iter().position(|n| matches!(n.op, Op::Gelu { .. })).unwrap();
        let cast = g.producer(g.nodes[at].inputs[0]).unwrap().1;
        assert_eq!(cast.op, Op::CastF16);
        let product = g.producer(cast.inputs[0]).unwrap().1;
        assert!(matches!(product.op, Op::MatMul { .. }));
        assert_eq!(g.nodes.iter().filter(|n| n.inputs.contains(&cast.inputs[0])).count(), 1);
        assert_eq!(g.cast_products_to_f16(F16Storage::RoundedF32, &HalfTable), 0, "a second call casts again");
    }

    #[test]
    fn activations_only_products_read_are_cast_once() {
        let mut g = mlp();
        g.cast_products_to_f16(F16Storage::RoundedF32, &HalfTable);
        // gelu's output feeds the second layer and its weight gradient: one cast, and the
        // f32 original's only reader is that cast.
        let gelu_out = g.nodes.iter().find(|n| matches!(n.op, Op::Gelu { .. })).unwrap().outputs[0];
        let readers: Vec<&Node> = g.nodes.iter().filter(|n| n.inputs.contains(&gelu_out)).collect();
        assert_eq!(readers.len(), 1);
        assert_eq!(readers[0].op, Op::CastF16);
        let copy = readers[0].outputs[0];
        assert_eq!(g.desc(copy).dtype, Dtype::F32, "rounded storage keeps f32 tensors");
        assert_eq!(g.nodes.iter().filter(|n| n.inputs.contains(&copy)).count(), 2);
        // A parameter is cast before each product that reads it (forward and input gradient).
        let w2 = g.find("w2").unwrap();
        assert_eq!(g.nodes.iter().filter(|n| n.op == Op::CastF16 && n.inputs[0] == w2).count(), 2);
    }

    #[test]
    fn parameters_cast_once_per_step_are_cast_once() {
        use wgformer::settings::F16WeightCasts;
        let mut g = mlp();
        g.cast_products_to_f16_with(F16Storage::Half, F16WeightCasts::OncePerStep, &HalfTable);
        // w2's one copy feeds both products that read it.
        let w2 = g.find("w2").unwrap();
        let casts: Vec<&Node> = g.nodes.iter().filter(|n| n.op == Op::CastF16 && n.inputs[0] == w2).collect();
        assert_eq!(casts.len(), 1);
        let copy = casts[0].outputs[0];
        assert_eq!(g.nodes.iter().filter(|n| n.inputs.contains(&copy)).count(), 2);
    }
}

/// f16 copies of the operands a backward keeps lower the planned peak (no GPU).
#[test]
fn f16_copies_of_saved_operands_lower_the_peak() {
    use wgformer::graph::plan::report;
    let mut t = common::graphs::fused_attention();
    let grads = backward(&mut t.graph, t.loss).unwrap();
    let f32_peak = report(&t.graph, t.loss, &grads).peak_activation_bytes;
    t.graph.cast_products_to_f16(F16Storage::Half, &HalfTable);
    let f16_peak = report(&t.graph, t.loss, &grads).peak_activation_bytes;
    // The activations kept for the weight gradients (and attention's q, k, v) are stored in f16.
    assert!(f16_peak * 10 < f32_peak * 8, "{f16_peak} vs {f32_peak}");
}
