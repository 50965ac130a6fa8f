//! Reference embedding lookup and gradient.

use super::Real;

/// out (N, C) = `table[ids]`.
pub fn embedding_forward<T: Real>(out: &mut [T], table: &[T], ids: &[u32], channels: usize) {
    for (n, &id) in ids.iter().enumerate() {
        let row = id as usize * channels;
        out[n * channels..(n + 1) * channels].copy_from_slice(&table[row..row + channels]);
    }
}

/// dtable (V, C) = sum of dout rows per id, in token order.
pub fn embedding_backward<T: Real>(dtable: &mut [T], dout: &[T], ids: &[u32], channels: usize, padding: Option<u32>) {
    dtable.iter_mut().for_each(|v| *v = T::of(0.0));
    for (n, &id) in ids.iter().enumerate().filter(|&(_, &id)| Some(id) != padding) {
        for c in 0..channels {
            dtable[id as usize * channels + c] += dout[n * channels + c];
        }
    }
}
