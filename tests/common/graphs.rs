//! Small composed graphs shared by the gradient checks (CPU) and the executor tests (GPU).
//! Each returns the graph, its loss, and the values of its u32 target inputs.

use wgformer::graph::{Dtype, Graph, TensorId};
use wgformer::kernels::GeluKind;

pub struct TestGraph {
    pub graph: Graph,
    pub loss: TensorId,
    pub targets: Vec<(TensorId, Vec<u32>)>,
}

/// linear -> layernorm -> gelu -> (a + relu(a)) -> linear -> smoothed cross-entropy with an ignored class.
pub fn mlp() -> TestGraph {
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
    TestGraph { graph: g, loss, targets: vec![(y, vec![0, 2, 1, 0])] }
}

/// linear -> softmax -> (* gate) -> scale -> linear -> cross-entropy.
pub fn softmax_gate() -> TestGraph {
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
    TestGraph { graph: g, loss, targets: vec![(y, vec![4, 0, 2])] }
}

/// Single-head attention from shared projections: softmax(q k^T) v, per batch entry.
pub fn attention() -> TestGraph {
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
    let logits = g.linear(o, wo, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.1, None).unwrap();
    TestGraph { graph: g, loss, targets: vec![(y, vec![0, 1, 4, 3, 2, 1])] }
}

/// c = a^T b^T with parameters stored transposed.
pub fn transposed() -> TestGraph {
    let mut g = Graph::new();
    let y = g.input("y", &[3], Dtype::U32);
    let a = g.param("a", &[4, 3]);
    let bt = g.param("bt", &[5, 4]);
    let logits = g.matmul(a, bt, true, true).unwrap();
    let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
    TestGraph { graph: g, loss, targets: vec![(y, vec![1, 4, 0])] }
}

/// Every test graph, named.
pub fn all() -> Vec<(&'static str, TestGraph)> {
    vec![("mlp", mlp()), ("softmax_gate", softmax_gate()), ("attention", attention()), ("transposed", transposed())]
}
