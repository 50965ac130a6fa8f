//! Reference softmax over the last dimension of (rows, cols).

use super::Real;

pub fn softmax_forward<T: Real>(y: &mut [T], x: &[T], rows: usize, cols: usize) {
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row.iter().copied().fold(row[0], T::max);
        let mut s = 0.0f64;
        for &v in row {
            s += (v - m).exp().to_f64();
        }
        for c in 0..cols {
            y[r * cols + c] = T::of((row[c] - m).exp().to_f64() / s);
        }
    }
}

pub fn softmax_backward<T: Real>(dx: &mut [T], y: &[T], dy: &[T], rows: usize, cols: usize) {
    for r in 0..rows {
        let o = r * cols;
        let mut d = 0.0f64;
        for c in 0..cols {
            d += (dy[o + c] * y[o + c]).to_f64();
        }
        for c in 0..cols {
            dx[o + c] = y[o + c] * (dy[o + c] - T::of(d));
        }
    }
}
