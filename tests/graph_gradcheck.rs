//! Composed graphs: the backward that autodiff appends, evaluated with the CPU references in
//! f64, against central finite differences of the loss.

mod common;
use common::{assert_grad, Rng};
use wgformer::autodiff::backward;
use wgformer::graph::{Dtype, Graph, Role, TensorId};
use wgformer::kernels::GeluKind;
use wgformer::reference::graph::evaluate;

/// Fills inputs and params with random values (targets from `targets`), runs backward, and
/// checks every parameter gradient numerically.
fn check_graph(g: &mut Graph, loss: TensorId, targets: &[(TensorId, Vec<u32>)], seed: u64) {
    let grads = backward(g, loss).unwrap();
    let mut rng = Rng::new(seed);
    let mut values: Vec<Vec<f64>> = g.tensors.iter().map(|t| vec![0.0; t.len()]).collect();
    for (i, t) in g.tensors.iter().enumerate() {
        if t.role != Role::Activation && t.dtype == Dtype::F32 {
            values[i] = rng.vec(t.len(), 1.0);
        }
    }
    for (t, v) in targets {
        values[t.0] = v.iter().map(|&x| x as f64).collect();
    }
    evaluate(g, &mut values);
    let params = g.params();
    assert!(!params.is_empty());
    for p in params {
        let grad = grads.get(p).unwrap_or_else(|| panic!("no gradient for {}", g.desc(p).name));
        let analytic = values[grad.0].clone();
        let mut scratch = values.clone();
        let numeric = common::numeric_grad(&values[p.0], 1e-5, |x| {
            scratch[p.0] = x.to_vec();
            evaluate(g, &mut scratch);
            scratch[loss.0][0]
        });
        assert_grad(&g.desc(p).name, &analytic, &numeric);
    }
}

#[test]
fn mlp_with_layernorm_gelu_residual_and_smoothed_cross_entropy() {
    let mut g = Graph::new();
    let (b, din, h, classes) = (4, 5, 8, 3);
    let x = g.input("x", &[b, din], Dtype::F32);
    let y = g.input("y", &[b], Dtype::U32);
    let (w1, b1) = (g.param("fc1.weight", &[h, din]), g.param("fc1.bias", &[h]));
    let (gamma, beta) = (g.param("ln.weight", &[h]), g.param("ln.bias", &[h]));
    let (w2, b2) = (g.param("fc2.weight", &[classes, h]), g.param("fc2.bias", &[classes]));
    let z = g.linear(x, w1, Some(b1)).unwrap();
    let z = g.layernorm(z, gamma, beta, 1e-5).unwrap();
    let a = g.gelu(z, GeluKind::Exact).unwrap();
    // `a` is used twice: its gradient is the sum of both paths.
    let r = g.relu(a).unwrap();
    let a2 = g.add(a, r).unwrap();
    let logits = g.linear(a2, w2, Some(b2)).unwrap();
    let loss = g.cross_entropy(logits, y, 0.1, Some(2)).unwrap();
    check_graph(&mut g, loss, &[(y, vec![0, 2, 1, 0])], 1);
}

#[test]
fn softmax_mul_scale_then_cross_entropy() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 4], Dtype::F32);
    let y = g.input("y", &[3], Dtype::U32);
    let w = g.param("w", &[6, 4]);
    let gate = g.param("gate", &[3, 6]);
    let w_out = g.param("w_out", &[5, 6]);
    let s = g.linear(x, w, None).unwrap();
    let p = g.softmax(s).unwrap();
    let m = g.mul(p, gate).unwrap();
    let m = g.scale(m, 3.0).unwrap();
    let logits = g.linear(m, w_out, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
    check_graph(&mut g, loss, &[(y, vec![4, 0, 2])], 2);
}

#[test]
fn attention_shaped_batched_matmuls_with_transposes() {
    // scores = q k^T, p = softmax(scores), o = p v, per batch entry; weights shared.
    let mut g = Graph::new();
    let (b, t, c, v) = (2, 3, 4, 5);
    let x = g.input("x", &[b, t, c], Dtype::F32);
    let y = g.input("y", &[b, t], Dtype::U32);
    let (wq, wk, wv, wo) =
        (g.param("wq", &[c, c]), g.param("wk", &[c, c]), g.param("wv", &[c, c]), g.param("wo", &[v, c]));
    let q = g.linear(x, wq, None).unwrap();
    let k = g.linear(x, wk, None).unwrap();
    let vv = g.linear(x, wv, None).unwrap();
    let scores = g.matmul_full(q, k, None, false, true, true).unwrap();
    let p = g.softmax(scores).unwrap();
    let o = g.matmul_full(p, vv, None, false, false, true).unwrap();
    // A transposed-A product too: o^T-shaped reduction folded back through a weight.
    let logits = g.linear(o, wo, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.1, None).unwrap();
    check_graph(&mut g, loss, &[(y, vec![0, 1, 4, 3, 2, 1])], 3);
}

#[test]
fn transposed_operands_in_the_forward() {
    // c = a^T b with a param stored (K, M) and b^T stored (N, K).
    let mut g = Graph::new();
    let y = g.input("y", &[3], Dtype::U32);
    let a = g.param("a", &[4, 3]);
    let bt = g.param("bt", &[5, 4]);
    let logits = g.matmul(a, bt, true, true).unwrap();
    let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
    check_graph(&mut g, loss, &[(y, vec![1, 4, 0])], 4);
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3], Dtype::F32);
    let w = g.param("w", &[4, 5]);
    let err = g.linear(x, w, None).unwrap_err().to_string();
    assert!(err.contains("matmul") && err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
    let gamma = g.param("gamma", &[4]);
    let err = g.layernorm(x, gamma, gamma, 1e-5).unwrap_err().to_string();
    assert!(err.contains("gamma") && err.contains("[3]"), "{err}");
    let t = g.input("t", &[3], Dtype::U32);
    assert!(g.cross_entropy(x, t, 0.1, None).is_err(), "targets [3] do not match logits [2, 3]");
    let b = g.param("b", &[2, 3]);
    let s = g.add(x, b).unwrap();
    assert!(backward(&mut g, s).is_err(), "a loss must come from cross_entropy");
}
