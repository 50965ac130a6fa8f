//! Fused graphs (`graph::fuse`, on by default: products accumulated into sums, residuals added
//! in the product's store, bias gradients summed by their weight gradient's product,
//! activations and their derivatives applied in the product's store, slices' gradients copied
//! into place, elementwise nodes run as one chain) train as the graphs they came from: the checked mode passes
//! node by node on fused Transformer and ViT training graphs (with dropouts fused into the
//! products' stores), and five Adam steps give the same losses and parameters with fusion on
//! and off (`WGFORMER_FUSION`), for the ViT (dropout on and off) and the Transformer, on every
//! test backend.

use crate::common;
use common::Rng;
use wgformer::graph::autodiff::backward;
use wgformer::graph::{Graph, TensorId};
use wgformer::models::transformer::{self, TransformerConfig};
use wgformer::models::vit;
use wgformer::runtime::exec::{Executor, HostData};
use wgformer::runtime::optim::{AdamConfig, Schedule};
use wgformer::runtime::trainer::{TrainConfig, Trainer};
use wgformer::Gpu;

/// A small training graph, its parameters and a batch: (graph, loss, params, inputs).
type Case = (Graph, TensorId, Vec<(TensorId, Vec<f32>)>, Vec<(TensorId, Vec<u32>, Vec<f32>)>);

fn transformer_case() -> Case {
    let cfg = TransformerConfig {
        d_model: 16,
        num_heads: 2,
        encoder_layers: 2,
        decoder_layers: 2,
        d_ff: 32,
        dropout: 0.1,
        ..TransformerConfig::small(19)
    };
    let t = transformer::build(&cfg, 2, 5, 5, true).unwrap();
    let params = transformer::init_params(&t.graph, 1);
    let mut inputs: Vec<(TensorId, Vec<u32>, Vec<f32>)> = vec![
        (t.src, vec![5, 6, 7, 2, 0, 8, 9, 2, 0, 0], vec![]),
        (t.src_lens, vec![4, 3], vec![]),
        (t.tgt_in, vec![1, 5, 9, 10, 0, 1, 6, 7, 0, 0], vec![]),
        (t.tgt_out, vec![5, 9, 10, 2, 0, 6, 7, 2, 0, 0], vec![]),
    ];
    inputs.extend(t.constants().into_iter().map(|(id, v)| (id, vec![], v)));
    (t.graph, t.loss, params, inputs)
}

fn vit_case_with(dropout: f32) -> Case {
    let text = format!(
        r#"{{"image_size": 8, "patch_size": 4, "num_channels": 3, "hidden_size": 8, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 16, "hidden_dropout_prob": {dropout},
        "attention_probs_dropout_prob": {dropout}, "layer_norm_eps": 1e-6, "num_labels": 3}}"#
    );
    let v = vit::build(&vit::VitConfig::from_json(&text).unwrap(), 3, true).unwrap();
    let params = vit::init_params(&v.graph, 3);
    let pixels = Rng::new(4).vec_f32(3 * 3 * 8 * 8, 1.0);
    let inputs = vec![(v.pixel_values, vec![], pixels), (v.labels, vec![2, 0, 1], vec![])];
    (v.graph, v.loss, params, inputs)
}

fn vit_case() -> Case {
    vit_case_with(0.1)
}

fn vit_case_without_dropout() -> Case {
    vit_case_with(0.0)
}

/// Five steps of `case` on `gpu`: the losses and the parameters after them, by name.
fn five_steps(gpu: &Gpu, (mut graph, loss, params, inputs): Case) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    let grads = backward(&mut graph, loss).unwrap();
    let config =
        TrainConfig { adam: AdamConfig::default(), schedule: Schedule::Constant(1e-2), clip: Some(1.0), seed: 5 };
    let mut trainer = Trainer::new(gpu, graph, loss, &grads, &[], config).unwrap();
    for (p, v) in &params {
        trainer.exec.set(gpu, *p, HostData::F32(v)).unwrap();
    }
    let feed: Vec<(TensorId, HostData)> = inputs
        .iter()
        .map(|(id, ids, values)| (*id, if ids.is_empty() { HostData::F32(values) } else { HostData::U32(ids) }))
        .collect();
    let losses = (0..5).map(|_| trainer.step(gpu, &feed).unwrap()).collect();
    let g = trainer.exec.graph();
    let after = trainer.params(gpu).unwrap().into_iter().map(|(p, v)| (g.desc(p).name.clone(), v)).collect();
    (losses, after)
}

/// The elements of a key projection's bias in parameter `name` (ViT's key.bias, or the middle
/// third of the Transformer's packed q/k/v in_proj_bias). Their gradient is zero in exact
/// arithmetic (softmax ignores a shift of all of a query's scores): what they get is rounding,
/// which Adam scales up to steps and which any other order of the same sums changes (the fused
/// bias gradients sum in another order), so they are not compared.
fn key_bias(name: &str, len: usize) -> std::ops::Range<usize> {
    if name.ends_with("key.bias") {
        0..len
    } else if name.ends_with("in_proj_bias") {
        len / 3..2 * len / 3
    } else {
        0..0
    }
}

fn without(v: &[f32], skip: &std::ops::Range<usize>) -> Vec<f32> {
    v.iter().enumerate().filter(|(i, _)| !skip.contains(i)).map(|(_, &x)| x).collect()
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * scale, "{what}[{i}]: fused {g}, unfused {w}");
    }
}

#[test]
fn fused_and_unfused_training_agree_with_dropout_on() {
    let cases = [
        ("vit", vit_case as fn() -> Case),
        ("vit without dropout", vit_case_without_dropout),
        ("transformer", transformer_case),
    ];
    for (name, case) in cases {
        let mut fused = Vec::new();
        common::for_each_gpu(|gpu| fused.push(five_steps(gpu, case())));
        let mut backend = 0;
        common::for_each_gpu_with(
            |s| s.kernels.fusion = false,
            |gpu| {
                let (losses, params) = five_steps(gpu, case());
                let (want_losses, want_params) = &fused[backend];
                close(&format!("{name} losses"), want_losses, &losses);
                for ((param, f), (_, u)) in want_params.iter().zip(&params) {
                    let keys = key_bias(param, f.len());
                    let (f, u) = (without(f, &keys), without(u, &keys));
                    close(&format!("{name} {param}"), &f, &u);
                }
                backend += 1;
            },
        );
        assert_eq!(backend, fused.len());
    }
}

#[test]
fn fused_transformer_and_vit_training_graphs_pass_the_checked_mode() {
    let fused_ops = ["matmul_residual", "matmul_act", "matmul_act_grad"];
    let cases = [
        // The Transformer's residual Adds and ReLUs have dropouts between them and their products.
        (
            transformer_case as fn() -> Case,
            &[
                "matmul_acc",
                "slice_into",
                "matmul_row_sums",
                "matmul_act",
                "matmul_act_grad",
                "matmul_residual",
                "elementwise_chain",
            ][..],
            &fused_ops[..],
        ),
        (
            vit_case_without_dropout,
            &["matmul_acc", "layernorm_bwd_acc", "matmul_residual", "matmul_row_sums", "matmul_act", "matmul_act_grad"],
            &[],
        ),
        (vit_case, &["matmul_residual"], &["matmul_residual"]),
    ];
    common::for_each_gpu(|gpu| {
        for (case, ops, dropped) in cases {
            checked_mode_passes(gpu, case(), ops, dropped);
        }
    });
}

/// The checked mode on `case`'s fused training graph, which has each of `ops`, and of
/// `dropped` some that apply a dropout in their store.
fn checked_mode_passes(gpu: &Gpu, (mut graph, loss, params, inputs): Case, ops: &[&str], dropped: &[&str]) {
    let grads = backward(&mut graph, loss).unwrap();
    let mut fused = graph.clone();
    let pinned = wgformer::graph::plan::training_pinned(Some(loss), Some(&grads));
    assert!(wgformer::graph::fuse::fuse(&mut fused, &pinned) > 0, "the sums fuse");
    for op in ops {
        assert!(fused.nodes.iter().any(|n| n.op.name() == *op), "no {op} in the fused graph");
    }
    for op in dropped {
        let with_dropout = |n: &&wgformer::graph::Node| n.op.name() == *op && n.op.product_dropout().is_some();
        assert!(fused.nodes.iter().any(|n| with_dropout(&n)), "no {op} with a dropout in the fused graph");
    }
    let exec = Executor::new(gpu, graph, Some(loss), Some(&grads)).unwrap();
    for (p, v) in &params {
        exec.set(gpu, *p, HostData::F32(v)).unwrap();
    }
    for (id, ids, values) in &inputs {
        let data = if ids.is_empty() { HostData::F32(values) } else { HostData::U32(ids) };
        exec.set(gpu, *id, data).unwrap();
    }
    exec.check_nodes(gpu, 7, 1e-5, 1e-3).unwrap();
}

/// Sums whose fusion would write over a tensor still to be read stay apart: a product moved to
/// its sum's place must not read a tensor another fused sum has overwritten in between, nor
/// accumulate into its own operand. The fused graph's loss equals the reference's.
#[test]
fn fusion_never_writes_over_a_tensor_still_to_be_read() {
    use wgformer::graph::Dtype;
    let mut g = Graph::default();
    let x = g.input("x", &[4, 8], Dtype::F32);
    let y = g.input("y", &[4, 8], Dtype::F32);
    let labels = g.input("labels", &[4], Dtype::U32);
    let w: Vec<TensorId> = (0..4).map(|i| g.param(&format!("w{i}"), &[8, 8])).collect();
    let a = g.linear(x, w[0], None).unwrap();
    let p1 = g.linear(a, w[1], None).unwrap(); // reads a
    let p2 = g.linear(y, w[2], None).unwrap();
    let s = g.add(a, p2).unwrap(); // a's last reader: fused, a overwritten here
    let c = g.linear(x, w[3], None).unwrap();
    let t = g.add(c, p1).unwrap(); // fusing p1 here would read a after it was overwritten
    let again = g.linear(t, w[1], None).unwrap();
    let u = g.add(t, again).unwrap(); // the product reads its own accumulator
    let out = g.add(s, u).unwrap();
    let loss = g.cross_entropy(out, labels, 0.0, None).unwrap();
    let mut fused = g.clone();
    assert!(wgformer::graph::fuse::fuse(&mut fused, &[loss]) >= 1, "the first sum fuses");
    let mut rng = Rng::new(11);
    let mut values: Vec<Vec<f32>> = g.tensors.iter().map(|t| vec![0.0; t.len()]).collect();
    for t in [x, y].into_iter().chain(w.iter().copied()) {
        values[t.0] = rng.vec_f32(g.desc(t).len(), 1.0);
    }
    let ids = vec![1u32, 5, 0, 7];
    values[labels.0] = ids.iter().map(|&l| l as f32).collect();
    let mut want = values.clone();
    wgformer::reference::graph::evaluate(&g, &mut want);
    common::for_each_gpu(|gpu| {
        let exec = Executor::new(gpu, g.clone(), Some(loss), None).unwrap();
        for t in [x, y].into_iter().chain(w.iter().copied()) {
            exec.set(gpu, t, HostData::F32(&values[t.0])).unwrap();
        }
        exec.set(gpu, labels, HostData::U32(&ids)).unwrap();
        let got = exec.step(gpu, &[], &Default::default()).unwrap();
        let w = want[loss.0][0];
        assert!((got - w).abs() <= 1e-5 * w.abs().max(1.0), "loss {got}, reference {w}");
    });
}
