//! Every reference backward against central finite differences of its forward, in f64.

use crate::common;
use common::{assert_grad, dot, numeric_grad, Rng};
use wgformer::kernels::{GeluKind, MatmulShape};
use wgformer::reference::{elementwise as ew, gelu, layernorm, matmul, reduce, softmax};

const H: f64 = 1e-5;

#[test]
fn matmul_backward_matches_finite_differences() {
    let (batch, m, n, k) = (2, 3, 4, 5);
    let mut rng = Rng::new(1);
    let (a, b, bias, w) =
        (rng.vec(batch * m * k, 1.0), rng.vec(batch * k * n, 1.0), rng.vec(n, 1.0), rng.vec(batch * m * n, 1.0));
    let shape = MatmulShape { bias: true, ..MatmulShape::packed(batch, m, n, k, false, false) };
    let fwd = |a: &[f64], b: &[f64], bias: &[f64]| {
        let mut c = vec![0.0; batch * m * n];
        matmul::matmul_forward(&mut c, a, b, Some(bias), &shape);
        dot(&c, &w)
    };
    let (mut da, mut db, mut dbias) = (vec![0.0; a.len()], vec![0.0; b.len()], vec![0.0; n]);
    matmul::matmul_backward(&mut da, &mut db, Some(&mut dbias), &w, &a, &b, batch, m, n, k);
    assert_grad("da", &da, &numeric_grad(&a, H, |x| fwd(x, &b, &bias)));
    assert_grad("db", &db, &numeric_grad(&b, H, |x| fwd(&a, x, &bias)));
    assert_grad("dbias", &dbias, &numeric_grad(&bias, H, |x| fwd(&a, &b, x)));
}

#[test]
fn matmul_transpose_flags_read_transposed_storage() {
    let (m, n, k) = (3, 4, 5);
    let mut rng = Rng::new(2);
    let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
    let transpose = |x: &[f64], r: usize, c: usize| (0..r * c).map(|i| x[(i % r) * c + i / r]).collect::<Vec<_>>();
    let (at, bt) = (transpose(&a, m, k), transpose(&b, k, n));
    let mut want = vec![0.0; m * n];
    matmul::matmul_forward(&mut want, &a, &b, None, &MatmulShape::packed(1, m, n, k, false, false));
    for (ta, tb) in [(true, false), (false, true), (true, true)] {
        let mut got = vec![0.0; m * n];
        let (aa, bb) = (if ta { &at } else { &a }, if tb { &bt } else { &b });
        matmul::matmul_forward(&mut got, aa, bb, None, &MatmulShape::packed(1, m, n, k, ta, tb));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "trans_a {ta} trans_b {tb}: {g} vs {w}");
        }
    }
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let (rows, cols, eps) = (3, 7, 1e-5);
    let mut rng = Rng::new(3);
    let (x, gamma, beta, w) =
        (rng.vec(rows * cols, 2.0), rng.vec(cols, 1.0), rng.vec(cols, 1.0), rng.vec(rows * cols, 1.0));
    let fwd = |x: &[f64], g: &[f64], b: &[f64]| {
        let (mut y, mut mean, mut rstd) = (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
        layernorm::layernorm_forward(&mut y, &mut mean, &mut rstd, x, g, b, rows, cols, eps);
        (dot(&y, &w), mean, rstd)
    };
    let (_, mean, rstd) = fwd(&x, &gamma, &beta);
    let (mut dx, mut dg, mut db) = (vec![0.0; rows * cols], vec![0.0; cols], vec![0.0; cols]);
    layernorm::layernorm_backward(&mut dx, &mut dg, &mut db, &x, &w, &mean, &rstd, &gamma, rows, cols);
    assert_grad("dx", &dx, &numeric_grad(&x, H, |v| fwd(v, &gamma, &beta).0));
    assert_grad("dgamma", &dg, &numeric_grad(&gamma, H, |v| fwd(&x, v, &beta).0));
    assert_grad("dbeta", &db, &numeric_grad(&beta, H, |v| fwd(&x, &gamma, v).0));
}

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let (x, w) = (rng.vec(41, 4.0), rng.vec(41, 1.0));
    for kind in [GeluKind::Exact, GeluKind::Tanh] {
        let fwd = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            gelu::gelu_forward(&mut y, x, kind);
            dot(&y, &w)
        };
        let mut dx = vec![0.0; x.len()];
        gelu::gelu_backward(&mut dx, &x, &w, kind);
        assert_grad(&format!("gelu {kind:?}"), &dx, &numeric_grad(&x, H, fwd));
    }
}

#[test]
fn silu_backward_matches_finite_differences() {
    let mut rng = Rng::new(14);
    // Wide enough to reach both tails of the sigmoid.
    let (x, w) = (rng.vec(41, 12.0), rng.vec(41, 1.0));
    let fwd = |x: &[f64]| {
        let mut y = vec![0.0; x.len()];
        ew::silu_forward(&mut y, x);
        dot(&y, &w)
    };
    let mut dx = vec![0.0; x.len()];
    ew::silu_backward(&mut dx, &x, &w);
    assert_grad("silu", &dx, &numeric_grad(&x, H, fwd));
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let (rows, cols) = (3, 6);
    let mut rng = Rng::new(5);
    let (x, w) = (rng.vec(rows * cols, 3.0), rng.vec(rows * cols, 1.0));
    let fwd = |x: &[f64]| {
        let mut y = vec![0.0; rows * cols];
        softmax::softmax_forward(&mut y, x, rows, cols);
        y
    };
    let y = fwd(&x);
    let mut dx = vec![0.0; rows * cols];
    softmax::softmax_backward(&mut dx, &y, &w, rows, cols);
    assert_grad("softmax", &dx, &numeric_grad(&x, H, |v| dot(&fwd(v), &w)));
}

#[test]
fn elementwise_backward_matches_finite_differences() {
    let n = 9;
    let mut rng = Rng::new(6);
    let (a, b, w) = (rng.vec(n, 1.0), rng.vec(n, 1.0), rng.vec(n, 1.0));
    let run = |f: fn(&mut [f64], &[f64], &[f64]), a: &[f64], b: &[f64]| {
        let mut out = vec![0.0; n];
        f(&mut out, a, b);
        dot(&out, &w)
    };
    let (mut da, mut db) = (vec![0.0; n], vec![0.0; n]);
    ew::mul_backward(&mut da, &mut db, &w, &a, &b);
    assert_grad("mul da", &da, &numeric_grad(&a, H, |x| run(ew::mul_forward, x, &b)));
    assert_grad("mul db", &db, &numeric_grad(&b, H, |x| run(ew::mul_forward, &a, x)));
    ew::add_backward(&mut da, &mut db, &w);
    assert_grad("add da", &da, &numeric_grad(&a, H, |x| run(ew::add_forward, x, &b)));
    assert_grad("add db", &db, &numeric_grad(&b, H, |x| run(ew::add_forward, &a, x)));
    let alpha = 0.37;
    ew::scale_backward(&mut da, &w, alpha);
    let scaled = |x: &[f64]| {
        let mut out = vec![0.0; n];
        ew::scale_forward(&mut out, x, alpha);
        dot(&out, &w)
    };
    assert_grad("scale", &da, &numeric_grad(&a, H, scaled));
}

#[test]
fn column_sum_backward_matches_finite_differences() {
    let (rows, cols) = (4, 5);
    let mut rng = Rng::new(7);
    let (x, w) = (rng.vec(rows * cols, 1.0), rng.vec(cols, 1.0));
    let fwd = |x: &[f64]| {
        let mut out = vec![0.0; cols];
        reduce::reduce_cols_forward(&mut out, x, rows, cols);
        dot(&out, &w)
    };
    let mut dx = vec![0.0; rows * cols];
    reduce::reduce_cols_backward(&mut dx, &w, rows, cols);
    assert_grad("reduce_cols", &dx, &numeric_grad(&x, H, fwd));
}
