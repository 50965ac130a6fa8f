//! Composed graphs: the backward that autodiff appends, evaluated with the CPU references in
//! f64, against central finite differences of the loss.

use crate::common;
use common::{assert_grad, Rng};
use wgformer::graph::autodiff::backward;
use wgformer::graph::{Dtype, Graph, Role, TensorId};
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
fn every_composed_graph_matches_finite_differences() {
    for (i, (name, mut t)) in common::graphs::all().into_iter().enumerate() {
        eprintln!("graph {name}");
        check_graph(&mut t.graph, t.loss, &t.targets, i as u64 + 1);
    }
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
