//! Dynamic loss scaling for mixed-precision training, as PyTorch's GradScaler does it: the
//! loss's gradient is multiplied by a scale so that small gradients stay representable in
//! f16, the gradients are unscaled before clipping and Adam (on the GPU, `clip.wgsl`), and a
//! step whose scaled gradients overflowed is skipped there. Here the scale follows the
//! outcome: halved after a skipped step, doubled after a run of clean ones.

use crate::error::{Error, Result};

/// The scale a run starts with: 2^16.
pub const INITIAL_SCALE: f32 = 65536.0;
/// Clean steps after which the scale doubles.
pub const GROWTH_INTERVAL: u32 = 2000;
/// Below this the gradients overflow at any useful scale: training has diverged.
pub const MIN_SCALE: f32 = 1.0 / 65536.0;

/// The current loss scale and what it has been through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaler {
    /// What the next step multiplies the loss's gradient by.
    pub scale: f32,
    /// Clean steps since the scale last changed.
    pub clean: u32,
    /// Steps skipped so far because their gradients overflowed.
    pub skipped: u32,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler { scale: INITIAL_SCALE, clean: 0, skipped: 0 }
    }
}

impl LossScaler {
    /// Takes the outcome of a step at `step`: `finite` when its gradient norm was finite (the
    /// update was applied). Returns whether it was; an error once the scale falls below
    /// [`MIN_SCALE`].
    pub fn update(&mut self, step: u32, finite: bool, norm: f32) -> Result<bool> {
        if finite {
            self.clean += 1;
            if self.clean >= GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.clean = 0;
            }
            return Ok(true);
        }
        self.scale /= 2.0;
        self.clean = 0;
        self.skipped += 1;
        if self.scale < MIN_SCALE {
            return Err(Error::NonFinite { step, what: "gradient norm at every loss scale", value: norm });
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_clean_steps() {
        let mut s = LossScaler::default();
        assert!(!s.update(1, false, f32::INFINITY).unwrap());
        assert_eq!((s.scale, s.skipped), (INITIAL_SCALE / 2.0, 1));
        for step in 0..GROWTH_INTERVAL - 1 {
            assert!(s.update(2 + step, true, 1.0).unwrap());
        }
        assert_eq!(s.scale, INITIAL_SCALE / 2.0, "not yet");
        s.update(9999, true, 1.0).unwrap();
        assert_eq!((s.scale, s.clean), (INITIAL_SCALE, 0));
        // Overflow at every scale is divergence, an error.
        let mut s = LossScaler::default();
        let outcome = (0..40).try_for_each(|step| s.update(step, false, f32::NAN).map(drop));
        assert!(outcome.is_err());
    }
}
