//! Reference scaled dot-product attention in the (B, T, H, D) layout, forward and backward, with
//! padding and causal masks; see shaders/attention.wgsl for the conventions (a query that sees
//! no key outputs 0 and passes no gradient).

use super::Real;

pub use crate::graph::params::AttentionShape;

/// Probabilities of query row (b, h, i) over its visible keys (f64).
fn probs<T: Real>(s: &AttentionShape, q: &[T], k: &[T], b: usize, h: usize, i: usize, end: usize) -> Vec<f64> {
    let qi = s.at(b, i, h, s.tq);
    let scores: Vec<f64> = (0..end)
        .map(|j| {
            let kj = s.at(b, j, h, s.tk);
            (0..s.head_dim).map(|d| q[qi + d].to_f64() * k[kj + d].to_f64()).sum::<f64>() * s.scale()
        })
        .collect();
    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

/// o (B, Tq, H, D) and the per-row log-sum-exp (B, H, Tq) (f64::MAX-like for rows with no key).
pub fn attention_forward<T: Real>(
    o: &mut [T],
    lse: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    key_lens: Option<&[u32]>,
    s: &AttentionShape,
) {
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.tq {
                attention_row(o, q, k, v, key_lens, s, b, h, i);
                let end = s.key_end(b, i, key_lens);
                let qi = s.at(b, i, h, s.tq);
                let scores: Vec<f64> = (0..end)
                    .map(|j| {
                        (0..s.head_dim).map(|d| q[qi + d].to_f64() * k[s.at(b, j, h, s.tk) + d].to_f64()).sum::<f64>()
                            * s.scale()
                    })
                    .collect();
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let l =
                    if end == 0 { f32::MAX as f64 } else { m + scores.iter().map(|x| (x - m).exp()).sum::<f64>().ln() };
                lse[(b * s.heads + h) * s.tq + i] = T::of(l);
            }
        }
    }
}

/// Computes only the output row (b, h, i): lets a test check a sample of a long sequence.
#[allow(clippy::too_many_arguments)]
pub fn attention_row<T: Real>(
    o: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    key_lens: Option<&[u32]>,
    s: &AttentionShape,
    b: usize,
    h: usize,
    i: usize,
) {
    let end = s.key_end(b, i, key_lens);
    let p = probs(s, q, k, b, h, i, end);
    let qi = s.at(b, i, h, s.tq);
    for d in 0..s.head_dim {
        let acc: f64 = (0..end).map(|j| p[j] * v[s.at(b, j, h, s.tk) + d].to_f64()).sum();
        o[qi + d] = T::of(acc);
    }
}

/// dq, dk, dv from dout, recomputing the probabilities.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    dout: &[T],
    key_lens: Option<&[u32]>,
    s: &AttentionShape,
) {
    backward(dq, dk, dv, [q, k, v, dout], None, key_lens, s)
}

/// [`attention_backward`] with each row's delta = do_i . o_i given (B, H, Tq), as the kernels
/// compute it from the stored o: with an f16 o, the backward sees o's rounding through delta.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_with_delta<T: Real>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    [q, k, v, dout]: [&[T]; 4],
    delta: &[T],
    key_lens: Option<&[u32]>,
    s: &AttentionShape,
) {
    backward(dq, dk, dv, [q, k, v, dout], Some(delta), key_lens, s)
}

fn backward<T: Real>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    [q, k, v, dout]: [&[T]; 4],
    delta: Option<&[T]>,
    key_lens: Option<&[u32]>,
    s: &AttentionShape,
) {
    let mut gq = vec![0.0f64; dq.len()];
    let mut gk = vec![0.0f64; dk.len()];
    let mut gv = vec![0.0f64; dv.len()];
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.tq {
                let end = s.key_end(b, i, key_lens);
                let p = probs(s, q, k, b, h, i, end);
                let qi = s.at(b, i, h, s.tq);
                // dp_j = do_i . v_j; ds_j = p_j (dp_j - sum_l p_l dp_l)
                let dp: Vec<f64> = (0..end)
                    .map(|j| (0..s.head_dim).map(|d| dout[qi + d].to_f64() * v[s.at(b, j, h, s.tk) + d].to_f64()).sum())
                    .collect();
                // sum_l p_l dp_l = do_i . o_i.
                let mean: f64 = match delta {
                    Some(delta) => delta[(b * s.heads + h) * s.tq + i].to_f64(),
                    None => (0..end).map(|j| p[j] * dp[j]).sum(),
                };
                for j in 0..end {
                    let kj = s.at(b, j, h, s.tk);
                    let ds = p[j] * (dp[j] - mean) * s.scale();
                    for d in 0..s.head_dim {
                        gv[kj + d] += p[j] * dout[qi + d].to_f64();
                        gq[qi + d] += ds * k[kj + d].to_f64();
                        gk[kj + d] += ds * q[qi + d].to_f64();
                    }
                }
            }
        }
    }
    for (out, g) in [(dq, gq), (dk, gk), (dv, gv)] {
        for (o, x) in out.iter_mut().zip(g) {
            *o = T::of(x);
        }
    }
}
