//! Reference data movement: axis swap, token copies.

/// y (A, C, B, D) <- x (A, B, C, D).
pub fn swap12_forward<T: Copy>(y: &mut [T], x: &[T], [a, b, c, d]: [usize; 4]) {
    for ia in 0..a {
        for ib in 0..b {
            for ic in 0..c {
                for id in 0..d {
                    y[((ia * c + ic) * b + ib) * d + id] = x[((ia * b + ib) * c + ic) * d + id];
                }
            }
        }
    }
}

/// dst[b, dst_off + t, :] = src[b or 0, src_off + t, :] for t < len.
#[allow(clippy::too_many_arguments)]
pub fn copy_tokens<T: Copy>(
    dst: &mut [T],
    src: &[T],
    batch: usize,
    channels: usize,
    src_tokens: usize,
    dst_tokens: usize,
    src_off: usize,
    dst_off: usize,
    len: usize,
    src_broadcast: bool,
) {
    for b in 0..batch {
        let bs = if src_broadcast { 0 } else { b };
        for t in 0..len {
            let s = (bs * src_tokens + src_off + t) * channels;
            let d = (b * dst_tokens + dst_off + t) * channels;
            dst[d..d + channels].copy_from_slice(&src[s..s + channels]);
        }
    }
}

/// patches (B, N, C*P*P) from image (B, C, H, W), or the reverse when `backward`.
pub fn patchify<T: Copy>(out: &mut [T], inp: &[T], [b, c, h, w]: [usize; 4], p: usize, backward: bool) {
    let (per_row, k) = (w / p, c * p * p);
    let patches = per_row * (h / p);
    for ib in 0..b {
        for ic in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let img = ((ib * c + ic) * h + y) * w + x;
                    let n = (y / p) * per_row + x / p;
                    let pat = (ib * patches + n) * k + (ic * p + y % p) * p + x % p;
                    if backward {
                        out[img] = inp[pat];
                    } else {
                        out[pat] = inp[img];
                    }
                }
            }
        }
    }
}
