//! Reference LayerNorm over the last dimension of (rows, cols), biased variance.

use super::Real;

/// y = (x - mean) * rstd * gamma + beta; returns mean and rstd per row in the given slices.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward<T: Real>(
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
    x: &[T],
    gamma: &[T],
    beta: &[T],
    rows: usize,
    cols: usize,
    eps: f64,
) {
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mu = row.iter().map(|v| v.to_f64()).sum::<f64>() / cols as f64;
        let var = row.iter().map(|v| (v.to_f64() - mu).powi(2)).sum::<f64>() / cols as f64;
        let rs = 1.0 / (var + eps).sqrt();
        for c in 0..cols {
            y[r * cols + c] = T::of((row[c].to_f64() - mu) * rs) * gamma[c] + beta[c];
        }
        mean[r] = T::of(mu);
        rstd[r] = T::of(rs);
    }
}

/// dx, dgamma, dbeta from dy and the saved mean and rstd.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<T: Real>(
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    x: &[T],
    dy: &[T],
    mean: &[T],
    rstd: &[T],
    gamma: &[T],
    rows: usize,
    cols: usize,
) {
    let mut dg = vec![0.0f64; cols];
    let mut db = vec![0.0f64; cols];
    for r in 0..rows {
        let o = r * cols;
        let (mu, rs) = (mean[r].to_f64(), rstd[r].to_f64());
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for c in 0..cols {
            let xhat = (x[o + c].to_f64() - mu) * rs;
            let g = dy[o + c].to_f64() * gamma[c].to_f64();
            sg += g;
            sgx += g * xhat;
            dg[c] += dy[o + c].to_f64() * xhat;
            db[c] += dy[o + c].to_f64();
        }
        let (mg, mgx) = (sg / cols as f64, sgx / cols as f64);
        for c in 0..cols {
            let xhat = (x[o + c].to_f64() - mu) * rs;
            let g = dy[o + c].to_f64() * gamma[c].to_f64();
            dx[o + c] = T::of(rs * (g - mg - xhat * mgx));
        }
    }
    for c in 0..cols {
        dgamma[c] = T::of(dg[c]);
        dbeta[c] = T::of(db[c]);
    }
}
