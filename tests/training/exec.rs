//! The executor on the GPU: gradients of composed graphs equal the CPU reference's (which the
//! gradient checks hold to finite differences), checked mode, one submit per training step,
//! and a small MLP whose loss Adam drives down.

use crate::common;
use common::{assert_close, for_each_gpu, random_values, Rng};
use wgformer::graph::autodiff::backward;
use wgformer::graph::{Dtype, Graph, Role, TensorId};
use wgformer::kernels::GeluKind;
use wgformer::reference::adam::AdamStep;
use wgformer::reference::graph::evaluate;
use wgformer::runtime::exec::{Executor, HostData, StepOptions};
use wgformer::Gpu;

fn upload_all(gpu: &Gpu, exec: &Executor, values: &[Vec<f32>], targets: &[(TensorId, Vec<u32>)]) {
    for (i, t) in exec.graph().tensors.iter().enumerate() {
        if t.role != Role::Activation && t.dtype == Dtype::F32 {
            exec.set(gpu, TensorId(i), HostData::F32(&values[i])).unwrap();
        }
    }
    for (t, v) in targets {
        exec.set(gpu, *t, HostData::U32(v)).unwrap();
    }
}

#[test]
fn gpu_gradients_match_the_reference() {
    for_each_gpu(|gpu| {
        for (i, (name, mut t)) in common::graphs::all().into_iter().enumerate() {
            let grads = backward(&mut t.graph, t.loss).unwrap();
            let mut values = random_values(&t.graph, 10 + i as u64);
            for (id, v) in &t.targets {
                values[id.0] = v.iter().map(|&x| x as f32).collect();
            }
            let exec = Executor::new(gpu, t.graph.clone(), Some(t.loss), Some(&grads)).unwrap();
            upload_all(gpu, &exec, &values, &t.targets);
            let loss = exec.step(gpu, &[], &StepOptions::default()).unwrap();
            evaluate(&t.graph, &mut values);
            assert_close(&format!("{name} loss"), &[loss], &values[t.loss.0], 1e-5, 1e-4);
            for (p, grad) in &grads.of {
                let got = exec.read(gpu, *grad).unwrap();
                let label = format!("{name} grad {}", t.graph.desc(*p).name);
                assert_close(&label, &got, &values[grad.0], 1e-5, 1e-3);
            }
        }
    });
}

#[test]
fn checked_mode_passes_and_names_a_bad_node() {
    for_each_gpu(|gpu| {
        let mut t = common::graphs::attention();
        backward(&mut t.graph, t.loss).unwrap();
        let values = random_values(&t.graph, 3);
        let exec = Executor::new(gpu, t.graph.clone(), Some(t.loss), None).unwrap();
        upload_all(gpu, &exec, &values, &t.targets);
        exec.check_nodes(gpu, 0, 1e-5, 1e-3).unwrap();
        // A tolerance nothing meets shows the report names the first node.
        let err = exec.check_nodes(gpu, 0, -1.0, 0.0).unwrap_err().to_string();
        assert!(err.contains("node 0 (matmul)"), "{err}");
    });
}

#[test]
fn a_training_step_is_one_submit() {
    common::for_each_fresh_gpu(|gpu| {
        let mut t = common::graphs::mlp();
        let grads = backward(&mut t.graph, t.loss).unwrap();
        let values = random_values(&t.graph, 4);
        let exec = Executor::new(gpu, t.graph.clone(), Some(t.loss), Some(&grads)).unwrap();
        upload_all(gpu, &exec, &values, &t.targets);
        let x = t.graph.find("x").unwrap();
        let step = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };
        let before = gpu.submit_count();
        exec.step(
            gpu,
            &[(x, HostData::F32(&values[x.0]))],
            &StepOptions { adam: Some(step), seed: 1, clip: Some(1.0), loss_scale: None, loss_weight: None },
        )
        .unwrap();
        assert_eq!(gpu.submit_count() - before, 1, "forward, backward, Adam and the loss readback in one submit");
    });
}

#[test]
fn bad_inputs_are_errors() {
    for_each_gpu(|gpu| {
        let t = common::graphs::mlp();
        let exec = Executor::new(gpu, t.graph.clone(), Some(t.loss), None).unwrap();
        let (x, y) = (t.graph.find("x").unwrap(), t.graph.find("y").unwrap());
        assert!(exec.set(gpu, x, HostData::F32(&[1.0; 3])).is_err(), "wrong length");
        assert!(exec.set(gpu, x, HostData::U32(&[1; 20])).is_err(), "wrong type");
        let err = exec.set(gpu, y, HostData::U32(&[0, 1, 7, 0])).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        exec.set(gpu, y, HostData::U32(&[0, 1, 2, 0])).unwrap();
    });
}

/// Points in 8 dimensions labelled by which of 4 random directions they lie closest to.
fn synthetic_batch(rng: &mut Rng, dirs: &[Vec<f32>], batch: usize) -> (Vec<f32>, Vec<u32>) {
    let mut x = Vec::with_capacity(batch * 8);
    let mut y = Vec::with_capacity(batch);
    for _ in 0..batch {
        let p = rng.vec_f32(8, 1.0);
        let scores: Vec<f32> = dirs.iter().map(|d| d.iter().zip(&p).map(|(a, b)| a * b).sum()).collect();
        let label = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(0);
        x.extend(p);
        y.push(label as u32);
    }
    (x, y)
}

#[test]
fn adam_trains_a_small_mlp() {
    for_each_gpu(|gpu| {
        let (batch, din, hidden, classes) = (64, 8, 32, 4);
        let mut g = Graph::new();
        let x = g.input("x", &[batch, din], Dtype::F32);
        let y = g.input("y", &[batch], Dtype::U32);
        let (w1, b1) = (g.param("fc1.weight", &[hidden, din]), g.param("fc1.bias", &[hidden]));
        let (gamma, beta) = (g.param("ln.weight", &[hidden]), g.param("ln.bias", &[hidden]));
        let (w2, b2) = (g.param("fc2.weight", &[classes, hidden]), g.param("fc2.bias", &[classes]));
        let h = g.linear(x, w1, Some(b1)).unwrap();
        let h = g.layernorm(h, gamma, beta, 1e-5).unwrap();
        let h = g.gelu(h, GeluKind::Exact).unwrap();
        let logits = g.linear(h, w2, Some(b2)).unwrap();
        let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
        let grads = backward(&mut g, loss).unwrap();
        let exec = Executor::new(gpu, g, Some(loss), Some(&grads)).unwrap();

        let mut rng = Rng::new(7);
        let init = |rng: &mut Rng, n: usize, fan_in: usize| rng.vec_f32(n, 1.0 / (fan_in as f64).sqrt());
        exec.set(gpu, w1, HostData::F32(&init(&mut rng, hidden * din, din))).unwrap();
        exec.set(gpu, w2, HostData::F32(&init(&mut rng, classes * hidden, hidden))).unwrap();
        exec.set(gpu, gamma, HostData::F32(&vec![1.0; hidden])).unwrap();
        for b in [b1, beta] {
            exec.set(gpu, b, HostData::F32(&vec![0.0; hidden])).unwrap();
        }
        exec.set(gpu, b2, HostData::F32(&vec![0.0; classes])).unwrap();

        let dirs: Vec<Vec<f32>> = (0..classes).map(|_| rng.vec_f32(din, 1.0)).collect();
        let mut losses = Vec::new();
        for step in 1..=150 {
            let (xb, yb) = synthetic_batch(&mut rng, &dirs, batch);
            let s = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step };
            let opts = StepOptions { adam: Some(s), seed: step, clip: None, loss_scale: None, loss_weight: None };
            losses.push(exec.step(gpu, &[(x, HostData::F32(&xb)), (y, HostData::U32(&yb))], &opts).unwrap());
        }
        let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
        let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
        eprintln!("MLP loss: first 10 steps {first:.4}, last 10 steps {last:.4}");
        assert!(last.is_finite() && last < 0.4 * first, "loss went from {first} to {last}");
    });
}

#[test]
fn clipped_adam_step_matches_the_reference() {
    use wgformer::reference::adam::adam_update;
    use wgformer::runtime::optim::{clip_factor, global_norm, AdamConfig};
    for_each_gpu(|gpu| {
        let mut t = common::graphs::mlp();
        let grads = backward(&mut t.graph, t.loss).unwrap();
        let mut values = random_values(&t.graph, 21);
        for (id, v) in &t.targets {
            values[id.0] = v.iter().map(|&x| x as f32).collect();
        }
        let exec = Executor::new(gpu, t.graph.clone(), Some(t.loss), Some(&grads)).unwrap();
        upload_all(gpu, &exec, &values, &t.targets);
        let adam = AdamConfig { weight_decay: 0.01, ..AdamConfig::default() }.at(1, 0.05);
        exec.step(
            gpu,
            &[],
            &StepOptions { adam: Some(adam), seed: 0, clip: Some(0.1), loss_scale: None, loss_weight: None },
        )
        .unwrap();

        evaluate(&t.graph, &mut values);
        let params = t.graph.params();
        let grad_values: Vec<&[f32]> = params.iter().map(|p| &values[grads.get(*p).unwrap().0][..]).collect();
        let norm = global_norm(&grad_values);
        let got_norm = exec.last_grad_norm(gpu).unwrap().unwrap();
        assert!((got_norm as f64 - norm).abs() <= 1e-4 * norm, "norm {got_norm} vs {norm}");
        let factor = clip_factor(norm, 0.1) as f32;
        assert!(factor < 1.0, "the test must actually clip (norm {norm})");
        for p in params {
            let grad: Vec<f32> = values[grads.get(p).unwrap().0].iter().map(|g| g * factor).collect();
            let mut want = values[p.0].clone();
            let n = want.len();
            adam_update(&mut want, &mut vec![0.0; n], &mut vec![0.0; n], &grad, &adam);
            assert_close(
                &format!("clipped update {}", t.graph.desc(p).name),
                &exec.read(gpu, p).unwrap(),
                &want,
                1e-5,
                1e-4,
            );
        }
    });
}

#[test]
fn executors_sharing_parameters_train_them_as_one() {
    use wgformer::runtime::optim::AdamConfig;
    for_each_gpu(|gpu| {
        let mut t = common::graphs::mlp();
        let grads = backward(&mut t.graph, t.loss).unwrap();
        let values = random_values(&t.graph, 5);
        let inputs = [random_values(&t.graph, 6), random_values(&t.graph, 7)];
        let x = t.graph.find("x").unwrap();
        let adam = |step| Some(AdamConfig::default().at(step, 0.05));
        // One executor taking two steps...
        let single = Executor::new(gpu, t.graph.clone(), Some(t.loss), Some(&grads)).unwrap();
        upload_all(gpu, &single, &values, &t.targets);
        for (i, input) in inputs.iter().enumerate() {
            let opts =
                StepOptions { adam: adam(i as u32 + 1), seed: 0, clip: None, loss_scale: None, loss_weight: None };
            single.step(gpu, &[(x, HostData::F32(&input[x.0]))], &opts).unwrap();
        }
        // ...and two sharing their parameters and moments, one step each.
        let a = Executor::new(gpu, t.graph.clone(), Some(t.loss), Some(&grads)).unwrap();
        upload_all(gpu, &a, &values, &t.targets);
        let b = Executor::sharing(gpu, t.graph.clone(), Some(t.loss), Some(&grads), &[], &a).unwrap();
        for (id, v) in &t.targets {
            b.set(gpu, *id, HostData::U32(v)).unwrap();
        }
        for (i, (exec, input)) in [&a, &b].into_iter().zip(&inputs).enumerate() {
            let opts =
                StepOptions { adam: adam(i as u32 + 1), seed: 0, clip: None, loss_scale: None, loss_weight: None };
            exec.step(gpu, &[(x, HostData::F32(&input[x.0]))], &opts).unwrap();
        }
        for p in t.graph.params() {
            let want = single.read(gpu, p).unwrap();
            assert_ne!(want, values[p.0], "the steps change {}", t.graph.desc(p).name);
            assert_close("shared param via a", &a.read(gpu, p).unwrap(), &want, 1e-6, 1e-5);
            assert_close("shared param via b", &b.read(gpu, p).unwrap(), &want, 1e-6, 1e-5);
        }
    });
}

#[test]
fn executors_on_one_device_share_its_compiled_kernels() {
    common::for_each_fresh_gpu(|gpu| {
        let t = common::graphs::mlp();
        let mut graph = t.graph;
        let grads = backward(&mut graph, t.loss).unwrap();
        let first = Executor::new(gpu, graph.clone(), Some(t.loss), Some(&grads)).unwrap();
        let after_first = gpu.compile_counts();
        assert!(after_first.0 > 0 && after_first.1 > 0, "{after_first:?}");
        // A second executor of the same graph, and an inference one: nothing compiles again.
        let second = Executor::new(gpu, graph.clone(), Some(t.loss), Some(&grads)).unwrap();
        let third = Executor::new(gpu, graph.clone(), Some(t.loss), None).unwrap();
        assert_eq!(gpu.compile_counts(), after_first, "executors compiled kernels again");
        // Each keeps its own optimizer (moments and step values): different learning rates
        // give different weights.
        let values = random_values(&graph, 3);
        for (exec, lr) in [(&first, 1e-2), (&second, 1e-1)] {
            upload_all(gpu, exec, &values, &t.targets);
            let adam = AdamStep { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };
            exec.step(
                gpu,
                &[],
                &StepOptions { adam: Some(adam), seed: 0, clip: None, loss_scale: None, loss_weight: None },
            )
            .unwrap();
        }
        let w = graph.find("fc1.weight").unwrap();
        let (a, b) = (first.read(gpu, w).unwrap(), second.read(gpu, w).unwrap());
        assert!(a.iter().zip(&b).any(|(x, y)| x != y), "the two optimizers' steps were not independent");
        upload_all(gpu, &third, &values, &t.targets);
        assert!(third.step(gpu, &[], &StepOptions::default()).unwrap().is_finite());
    });
}

#[test]
fn a_non_finite_step_is_skipped_and_stops_the_trainer_naming_the_step() {
    use wgformer::runtime::optim::{AdamConfig, Schedule};
    use wgformer::runtime::trainer::{TrainConfig, Trainer};
    for_each_gpu(|gpu| {
        let mut t = common::graphs::mlp();
        let grads = backward(&mut t.graph, t.loss).unwrap();
        let config =
            TrainConfig { adam: AdamConfig::default(), schedule: Schedule::Constant(1e-3), clip: Some(1.0), seed: 0 };
        let mut trainer = Trainer::new(gpu, t.graph.clone(), t.loss, &grads, &[], config).unwrap();
        let values = random_values(&t.graph, 3);
        upload_all(gpu, &trainer.exec, &values, &t.targets);
        let x = t.graph.find("x").unwrap();
        trainer.step(gpu, &[]).unwrap();
        let before = trainer.params(gpu).unwrap();

        // One infinite input: the loss and every gradient are NaN or inf.
        let mut bad = values[x.0].clone();
        bad[3] = f32::INFINITY;
        let err = trainer.step(gpu, &[(x, HostData::F32(&bad))]).unwrap_err();
        assert!(matches!(err, wgformer::Error::NonFinite { step: 2, .. }), "{err}");
        assert!(err.to_string().contains("at step 2"), "{err}");
        assert_eq!(trainer.step, 1, "the failed step is not counted");
        assert!(trainer.exec.last_step_norm().is_some_and(|n| !n.is_finite()));
        // The GPU skipped the update: parameters (and so the moments' effect) are unchanged.
        assert_eq!(trainer.params(gpu).unwrap(), before);
        // Good data trains on.
        trainer.step(gpu, &[(x, HostData::F32(&values[x.0]))]).unwrap();
        assert_ne!(trainer.params(gpu).unwrap(), before);
    });
}
