//! Small composed graphs shared by the gradient checks (CPU) and the executor tests (GPU).
//! Each returns the graph, its loss, and the values of its u32 target inputs.

use wgformer::graph::{Dtype, Graph, TensorId};
use wgformer::kernels::GeluKind;

#[derive(Clone)]
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
    // A row mean, broadcast back over the rows, shifts every row (softmax is not invariant to
    // a per-column shift).
    let mean = g.mean_rows(s).unwrap();
    let s = g.add(s, mean).unwrap();
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

/// Token embedding + broadcast position embedding + dropout + two-head attention with key
/// padding and a causal mask, as in a Transformer decoder.
pub fn embedding_attention() -> TestGraph {
    let mut g = Graph::new();
    let (b, t, c, vocab, out) = (2, 4, 8, 7, 5);
    let ids = g.input("ids", &[b, t], Dtype::U32);
    let lens = g.input("key_lens", &[b], Dtype::U32);
    let y = g.input("y", &[b, t], Dtype::U32);
    let table = g.param("embed", &[vocab, c]);
    let pos = g.param("pos", &[1, t, c]);
    let (wq, wk, wv, wo) =
        (g.param("wq", &[c, c]), g.param("wk", &[c, c]), g.param("wv", &[c, c]), g.param("wo", &[c, c]));
    let w_out = g.param("w_out", &[out, c]);
    let x = g.embedding(table, ids).unwrap();
    let x = g.add(x, pos).unwrap();
    let x = g.dropout(x, 0.25).unwrap();
    let (q, k, v) = (g.linear(x, wq, None).unwrap(), g.linear(x, wk, None).unwrap(), g.linear(x, wv, None).unwrap());
    let a = g.attention(q, k, v, 2, Some(lens), true, 0.1).unwrap();
    let a = g.linear(a, wo, None).unwrap();
    let logits = g.linear(a, w_out, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.1, Some(0)).unwrap();
    // Token 3 appears twice and token 6 never: the embedding gradient sums and skips rows.
    TestGraph {
        graph: g,
        loss,
        targets: vec![(ids, vec![3, 1, 3, 5, 2, 3, 0, 4]), (lens, vec![4, 2]), (y, vec![1, 2, 0, 4, 3, 1, 2, 2])],
    }
}

/// ViT-shaped: patch projection, a broadcast class token concatenated in front, position
/// embeddings, layernorm, attention, and the class token sliced out for the head.
pub fn vit_like() -> TestGraph {
    let mut g = Graph::new();
    // 3x4x8 images in 2x2 patches: n = 8 patches of p = 12 values. The image is a parameter
    // so that the gradient check covers patchify's backward.
    let (b, n, p, c, classes) = (2, 8, 12, 4, 3);
    let image = g.param("image", &[b, 3, 4, 8]);
    let patches = g.patchify(image, 2).unwrap();
    let y = g.input("y", &[b], Dtype::U32);
    let (w_patch, b_patch) = (g.param("patch.weight", &[c, p]), g.param("patch.bias", &[c]));
    let cls = g.param("cls", &[1, 1, c]);
    let pos = g.param("pos", &[1, n + 1, c]);
    let (gamma, beta) = (g.param("ln.weight", &[c]), g.param("ln.bias", &[c]));
    let wqkv: Vec<TensorId> = ["wq", "wk", "wv"].iter().map(|name| g.param(name, &[c, c])).collect();
    let head = g.param("head", &[classes, c]);
    let x = g.linear(patches, w_patch, Some(b_patch)).unwrap();
    let x = g.concat_tokens(cls, x).unwrap();
    let x = g.add(x, pos).unwrap();
    let h = g.layernorm(x, gamma, beta, 1e-6).unwrap();
    let q = g.linear(h, wqkv[0], None).unwrap();
    let k = g.linear(h, wqkv[1], None).unwrap();
    let v = g.linear(h, wqkv[2], None).unwrap();
    let a = g.attention(q, k, v, 2, None, false, 0.0).unwrap();
    let x = g.add(x, a).unwrap();
    let cls_out = g.slice_tokens(x, 0, 1).unwrap();
    let logits = g.linear(cls_out, head, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
    TestGraph { graph: g, loss, targets: vec![(y, vec![2, 0])] }
}

/// The fused attention op (head dim 16): causal self-attention with key padding, then
/// cross-attention from 3 queries to 5 padded keys, as in a Transformer decoder.
pub fn fused_attention() -> TestGraph {
    let mut g = Graph::new();
    let (b, t, s_len, c, out) = (2, 4, 5, 32, 3);
    let x = g.input("x", &[b, t, c], Dtype::F32);
    let mem = g.input("memory", &[b, s_len, c], Dtype::F32);
    let lens = g.input("lens", &[b], Dtype::U32);
    let src_lens = g.input("src_lens", &[b], Dtype::U32);
    let y = g.input("y", &[b, t], Dtype::U32);
    let w: Vec<TensorId> = (0..6).map(|i| g.param(&format!("w{i}"), &[c, c])).collect();
    let w_out = g.param("w_out", &[out, c]);
    let (q, k, v) =
        (g.linear(x, w[0], None).unwrap(), g.linear(x, w[1], None).unwrap(), g.linear(x, w[2], None).unwrap());
    let a = g.attention(q, k, v, 2, Some(lens), true, 0.0).unwrap();
    let q2 = g.linear(a, w[3], None).unwrap();
    let (k2, v2) = (g.linear(mem, w[4], None).unwrap(), g.linear(mem, w[5], None).unwrap());
    let a2 = g.attention(q2, k2, v2, 2, Some(src_lens), false, 0.0).unwrap();
    assert!(g.nodes.iter().any(|n| matches!(n.op, wgformer::graph::Op::Attention { .. })), "takes the fused op");
    let logits = g.linear(a2, w_out, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
    TestGraph {
        graph: g,
        loss,
        targets: vec![(lens, vec![4, 3]), (src_lens, vec![5, 2]), (y, vec![0, 1, 2, 1, 0, 2, 2, 1])],
    }
}

/// A packed (3C, C) weight and (3C) bias sliced into three projections, as PyTorch's
/// in_proj_weight is used; the gradient of the packed tensors sums the three slices.
pub fn packed_projection() -> TestGraph {
    let mut g = Graph::new();
    let (b, t, c, out) = (2, 3, 4, 3);
    let x = g.input("x", &[b, t, c], Dtype::F32);
    let y = g.input("y", &[b, t], Dtype::U32);
    let w = g.param("in_proj_weight", &[3 * c, c]);
    let bias = g.param("in_proj_bias", &[3 * c]);
    let w_out = g.param("w_out", &[out, c]);
    let proj = |g: &mut Graph, i: usize| {
        let wi = g.slice(w, 0, i * c, c).unwrap();
        let bi = g.slice(bias, 0, i * c, c).unwrap();
        g.linear(x, wi, Some(bi)).unwrap()
    };
    let (q, k, v) = (proj(&mut g, 0), proj(&mut g, 1), proj(&mut g, 2));
    let qk = g.mul(q, k).unwrap();
    let h = g.add(qk, v).unwrap();
    // A slice along the channels of an activation too.
    let h2 = g.slice(h, 2, 1, 2).unwrap();
    let h2 = g.concat_tokens(h2, h2).unwrap();
    let w2 = g.param("w2", &[c, 2]);
    let h3 = g.linear(h2, w2, None).unwrap();
    let h3 = g.slice_tokens(h3, 1, t).unwrap();
    let h = g.add(h, h3).unwrap();
    let logits = g.linear(h, w_out, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
    TestGraph { graph: g, loss, targets: vec![(y, vec![0, 1, 2, 1, 0, 2])] }
}

/// linear -> SiLU -> linear -> cross-entropy: a Marian-style feed-forward block.
pub fn silu_ffn() -> TestGraph {
    let mut g = Graph::new();
    let (b, din, h, classes) = (5, 6, 12, 4);
    let x = g.input("x", &[b, din], Dtype::F32);
    let y = g.input("y", &[b], Dtype::U32);
    let (w1, b1) = (g.param("fc1.weight", &[h, din]), g.param("fc1.bias", &[h]));
    let w2 = g.param("fc2.weight", &[classes, h]);
    let z = g.linear(x, w1, Some(b1)).unwrap();
    let a = g.silu(z).unwrap();
    let logits = g.linear(a, w2, None).unwrap();
    let loss = g.cross_entropy(logits, y, 0.0, None).unwrap();
    TestGraph { graph: g, loss, targets: vec![(y, vec![3, 0, 1, 2, 1])] }
}

/// Every test graph, named.
pub fn all() -> Vec<(&'static str, TestGraph)> {
    vec![
        ("mlp", mlp()),
        ("softmax_gate", softmax_gate()),
        ("attention", attention()),
        ("transposed", transposed()),
        ("embedding_attention", embedding_attention()),
        ("vit_like", vit_like()),
        ("fused_attention", fused_attention()),
        ("packed_projection", packed_projection()),
        ("silu_ffn", silu_ffn()),
    ]
}
