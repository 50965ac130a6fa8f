//! Optimizer settings and learning-rate schedules. The update itself runs on the GPU
//! (kernels/adam.rs), clipped by the global gradient norm computed there (kernels/clip.rs).

use crate::graph::AdamStep;
use crate::graph::TensorId;

/// Adam's moments per parameter, (param, exp_avg, exp_avg_sq), as checkpoints store them.
pub type Moments = Vec<(TensorId, Vec<f32>, Vec<f32>)>;

/// Adam / AdamW hyper-parameters (weight_decay > 0: AdamW's decoupled decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

impl AdamConfig {
    /// The values of step `step` (from 1) at learning rate `lr`.
    pub fn at(&self, step: u32, lr: f32) -> AdamStep {
        AdamStep { lr, beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay, step }
    }
}

/// Learning rate as a function of the step (counted from 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    Constant(f32),
    /// "Attention Is All You Need": scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).
    Noam {
        d_model: usize,
        warmup: u32,
        scale: f32,
    },
    /// Linear warmup from 0 to `peak` over `warmup` steps, then a cosine down to `min_lr` at `total`.
    WarmupCosine {
        peak: f32,
        min_lr: f32,
        warmup: u32,
        total: u32,
    },
    /// Linear warmup from 0 to `peak` over `warmup` steps, then `peak` for good (open-ended
    /// runs, which have no planned end to decay towards).
    WarmupConstant {
        peak: f32,
        warmup: u32,
    },
}

impl Schedule {
    pub fn lr(&self, step: u32) -> f32 {
        let s = step.max(1) as f64;
        match *self {
            Schedule::Constant(lr) => lr,
            Schedule::WarmupConstant { peak, warmup } => {
                peak * (step.max(1).min(warmup.max(1)) as f32 / warmup.max(1) as f32)
            }
            Schedule::Noam { d_model, warmup, scale } => {
                let w = warmup.max(1) as f64;
                (scale as f64 * (d_model as f64).powf(-0.5) * s.powf(-0.5).min(s * w.powf(-1.5))) as f32
            }
            Schedule::WarmupCosine { peak, min_lr, warmup, total } => {
                if step <= warmup {
                    return peak * step as f32 / warmup.max(1) as f32;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let t = ((s - warmup as f64) / span).min(1.0);
                (min_lr as f64 + 0.5 * (peak - min_lr) as f64 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}

/// Global norm of a set of gradients, sqrt(sum of squares), in f64 (the CPU reference of the
/// clipping kernels).
pub fn global_norm(grads: &[&[f32]]) -> f64 {
    grads.iter().flat_map(|g| g.iter()).map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
}

/// The factor clipping multiplies gradients by: min(1, max_norm / (norm + 1e-6)); -1 when
/// the norm is NaN or inf, which makes Adam skip the step (parameters and moments unchanged).
pub fn clip_factor(norm: f64, max_norm: f32) -> f64 {
    if !norm.is_finite() {
        return -1.0;
    }
    (max_norm as f64 / (norm + 1e-6)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noam_peaks_at_warmup() {
        let s = Schedule::Noam { d_model: 512, warmup: 4000, scale: 1.0 };
        let peak = s.lr(4000);
        assert!((peak - 512f32.powf(-0.5) * 4000f32.powf(-0.5)).abs() < 1e-9);
        assert!(s.lr(3999) < peak && s.lr(4001) < peak);
        assert!((s.lr(1) - 512f32.powf(-0.5) * 4000f32.powf(-1.5)).abs() < 1e-12);
    }

    #[test]
    fn warmup_cosine_ramps_then_decays_to_min() {
        let s = Schedule::WarmupCosine { peak: 1e-3, min_lr: 1e-5, warmup: 10, total: 110 };
        assert!((s.lr(5) - 5e-4).abs() < 1e-9);
        assert!((s.lr(10) - 1e-3).abs() < 1e-9);
        assert!((s.lr(60) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-8);
        assert!((s.lr(110) - 1e-5).abs() < 1e-9);
        assert!((s.lr(500) - 1e-5).abs() < 1e-9);
    }

    #[test]
    fn warmup_constant_ramps_then_holds() {
        let s = Schedule::WarmupConstant { peak: 1e-3, warmup: 10 };
        assert!((s.lr(5) - 5e-4).abs() < 1e-9);
        assert_eq!(s.lr(10), 1e-3);
        assert_eq!(s.lr(100_000), 1e-3);
        assert_eq!(Schedule::WarmupConstant { peak: 1e-3, warmup: 0 }.lr(1), 1e-3);
    }

    #[test]
    fn clip_factor_only_shrinks() {
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert!((clip_factor(4.0, 1.0) - 0.25).abs() < 1e-6);
    }
}
