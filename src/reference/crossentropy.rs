//! Reference label-smoothed cross-entropy with an ignore index, fused with its gradient.
//!
//! For each row r with target y != ignore: p = softmax(`logits[r]`),
//!   loss_r = -(1 - e) log `p[y]` - (e / V) sum_c log `p[c]`
//!   `dlogits[r, c]` = (`p[c]` - (1 - e) `[c == y]` - e / V) / n
//! where n is the number of rows not ignored; loss = sum_r loss_r / n. Ignored rows get zero
//! gradient; with n = 0 the loss and every gradient are 0.

use super::Real;

/// Returns the mean loss and writes d loss / d logits.
pub fn cross_entropy_forward<T: Real>(
    dlogits: &mut [T],
    logits: &[T],
    targets: &[u32],
    vocab: usize,
    smoothing: f64,
    ignore: Option<u32>,
) -> T {
    let valid = targets.iter().filter(|&&t| Some(t) != ignore).count();
    let mut total = 0.0f64;
    for (r, &y) in targets.iter().enumerate() {
        let row = &logits[r * vocab..(r + 1) * vocab];
        let drow = &mut dlogits[r * vocab..(r + 1) * vocab];
        if Some(y) == ignore {
            drow.iter_mut().for_each(|d| *d = T::of(0.0));
            continue;
        }
        let m = row.iter().map(|v| v.to_f64()).fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v.to_f64() - m).exp()).sum::<f64>().ln();
        let mean_logp = row.iter().map(|v| v.to_f64() - lse).sum::<f64>() / vocab as f64;
        total += -(1.0 - smoothing) * (row[y as usize].to_f64() - lse) - smoothing * mean_logp;
        for (c, d) in drow.iter_mut().enumerate() {
            let target = (1.0 - smoothing) * (c == y as usize) as u8 as f64 + smoothing / vocab as f64;
            *d = T::of(((row[c].to_f64() - lse).exp() - target) / valid as f64);
        }
    }
    T::of(if valid == 0 { 0.0 } else { total / valid as f64 })
}
