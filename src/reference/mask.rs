//! Reference attention masks on scores (B, H, Tq, Tk); see shaders/mask.wgsl.

use super::Real;

/// The value a masked score takes: finite, so a fully masked row softmaxes to uniform, not NaN.
pub const MASKED: f64 = -1e30;

fn masked(i: usize, [_, h, tq, tk]: [usize; 4], key_lens: Option<&[u32]>, causal: bool) -> bool {
    let (j, q, b) = (i % tk, (i / tk) % tq, i / (tk * tq * h));
    key_lens.is_some_and(|l| j >= l[b] as usize) || (causal && j > q + (tk - tq))
}

/// y = x with masked scores set to MASKED (`backward`: dx = dy with masked entries 0).
pub fn mask_apply<T: Real>(
    y: &mut [T],
    x: &[T],
    dims: [usize; 4],
    key_lens: Option<&[u32]>,
    causal: bool,
    backward: bool,
) {
    let fill = T::of(if backward { 0.0 } else { MASKED });
    for i in 0..y.len() {
        y[i] = if masked(i, dims, key_lens, causal) { fill } else { x[i] };
    }
}
