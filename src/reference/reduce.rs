//! Reference column sums and their backward.

use super::Real;

/// `out[c]` = sum over rows of `inp[r, c]`.
pub fn reduce_cols_forward<T: Real>(out: &mut [T], inp: &[T], rows: usize, cols: usize) {
    for c in 0..cols {
        let mut s = 0.0f64;
        for r in 0..rows {
            s += inp[r * cols + c].to_f64();
        }
        out[c] = T::of(s);
    }
}

/// `dinp[r, c]` = `dout[c]`.
pub fn reduce_cols_backward<T: Real>(dinp: &mut [T], dout: &[T], rows: usize, cols: usize) {
    for r in 0..rows {
        dinp[r * cols..(r + 1) * cols].copy_from_slice(&dout[..cols]);
    }
}
