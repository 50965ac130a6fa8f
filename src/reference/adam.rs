//! Reference Adam / AdamW update (decoupled weight decay, as torch.optim.AdamW).
//!
//! m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//! p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + lr * wd * p

pub use crate::graph::params::AdamStep;

pub fn adam_update(param: &mut [f32], m: &mut [f32], v: &mut [f32], grad: &[f32], s: &AdamStep) {
    let (b1, b2) = (s.beta1 as f64, s.beta2 as f64);
    let bc1 = 1.0 - b1.powi(s.step as i32);
    let bc2 = 1.0 - b2.powi(s.step as i32);
    for i in 0..param.len() {
        let g = grad[i] as f64;
        let mi = b1 * m[i] as f64 + (1.0 - b1) * g;
        let vi = b2 * v[i] as f64 + (1.0 - b2) * g * g;
        let p = param[i] as f64;
        let update = (mi / bc1) / ((vi / bc2).sqrt() + s.eps as f64) + s.weight_decay as f64 * p;
        param[i] = (p - s.lr as f64 * update) as f32;
        m[i] = mi as f32;
        v[i] = vi as f32;
    }
}
