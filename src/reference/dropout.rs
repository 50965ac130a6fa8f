//! Reference dropout: the same counter-based hash as shaders/dropout.wgsl, bit for bit.

use super::Real;

fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// Whether element `i` of the dropout node with `salt` survives in the step with `seed`.
pub fn keep(seed: u32, salt: u32, i: u32, threshold: u32) -> bool {
    pcg(pcg(pcg(seed) ^ salt) ^ i) >= threshold
}

/// y = keep ? x * scale : 0 (also the backward, applied to dy).
pub fn dropout_forward<T: Real>(y: &mut [T], x: &[T], seed: u32, salt: u32, threshold: u32, scale: f32) {
    for (i, (o, &v)) in y.iter_mut().zip(x).enumerate() {
        *o = if keep(seed, salt, i as u32, threshold) { v * T::of(scale as f64) } else { T::of(0.0) };
    }
}
