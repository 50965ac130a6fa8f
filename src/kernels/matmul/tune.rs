//! A measured choice between the tiled kernel's large (8x4) and small (4x4) blocks, per product
//! shape, at first use on GPUs. On an H200 the fixed rule (large blocks only where they make 512
//! workgroups) picked 4x4 for 4096x512x512 and 768x768x1576, where 8x4 ran 17-21% faster, and
//! was right for 512x512x4096 (8x4 25% slower): the number of blocks alone does not decide.
//! Each new shape is timed once (both blocks, median of 3 after a warm-up, on zero operands of
//! its size); the choice lasts as long as the kernels (one per device). `WGFORMER_TUNE=0` keeps
//! the rule, `WGFORMER_TUNE=1` measures on CPU adapters too.

use super::{Matmul, MatmulSet, MatmulShape, MatmulVariant};
use crate::error::Result;
use crate::gpu::Gpu;

/// A product as tuned: batch, M, N, K, transposes, bias, accumulation.
pub(super) type TuneKey = (usize, usize, usize, usize, bool, bool, bool, bool);

fn key(s: &MatmulShape) -> TuneKey {
    (s.batch, s.m, s.n, s.k, s.trans_a, s.trans_b, s.bias, s.accumulate)
}

/// Whether block choices are measured here (default: on GPUs, not CPU adapters).
fn enabled(gpu: &Gpu) -> bool {
    match std::env::var("WGFORMER_TUNE").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => !gpu.is_cpu(),
    }
}

impl Matmul {
    /// Both tiled sets, where the adapter runs the tiled kernel with two blocks.
    fn tiled_pair(&self) -> Option<(&MatmulSet, &MatmulSet)> {
        let small = self.small.as_ref()?;
        (self.large.best == MatmulVariant::Tiled
            && small.best == MatmulVariant::Tiled
            && self.large.block != small.block)
            .then_some((&self.large, small))
    }

    /// The pipelines `shape` runs with: measured on first use where tuning is on, else the rule.
    pub(super) fn choose(&self, gpu: &Gpu, shape: &MatmulShape) -> Result<&MatmulSet> {
        let Some((large, small)) = self.tiled_pair().filter(|_| enabled(gpu)) else { return Ok(self.set_for(shape)) };
        if let Some(set) = self.tuned_set(shape) {
            return Ok(set);
        }
        let use_large = match self.measure(gpu, shape, large, small) {
            Ok(faster) => faster,
            // A lost device stays an error; anything else (operands over the adapter's limits,
            // say) keeps the rule.
            Err(e) if e.is_device_lost() => return Err(e),
            Err(_) => std::ptr::eq(self.set_for(shape), large),
        };
        if let Ok(mut tuned) = self.tuned.lock() {
            tuned.insert(key(shape), use_large);
        }
        Ok(if use_large { large } else { small })
    }

    /// How many product shapes had their block measured (for tests and reports).
    pub fn tuned_shapes(&self) -> usize {
        self.tuned.lock().map_or(0, |t| t.len())
    }

    /// The set measured for `shape`, if it was.
    fn tuned_set(&self, shape: &MatmulShape) -> Option<&MatmulSet> {
        let (large, small) = self.tiled_pair()?;
        let use_large = self.tuned.lock().ok()?.get(&key(shape)).copied()?;
        Some(if use_large { large } else { small })
    }

    /// The set `shape` runs with so far: measured, or the rule's (no measuring).
    pub(super) fn chosen(&self, shape: &MatmulShape) -> &MatmulSet {
        self.tuned_set(shape).unwrap_or_else(|| self.set_for(shape))
    }

    /// Whether the large blocks ran `shape` at least as fast as the small ones.
    fn measure(&self, gpu: &Gpu, shape: &MatmulShape, large: &MatmulSet, small: &MatmulSet) -> Result<bool> {
        let (na, nb, nc) = shape.extents();
        let (a, b, c) = (gpu.zeros("tune.a", na)?, gpu.zeros("tune.b", nb)?, gpu.zeros("tune.c", nc)?);
        let bias = if shape.bias { Some(gpu.zeros("tune.bias", shape.n)?) } else { None };
        let timer = crate::kernels::Timer::new(gpu);
        let mut ms = [0.0; 2];
        for (i, set) in [large, small].into_iter().enumerate() {
            let d = self.fwd_with(gpu, set, &c, &a, &b, bias.as_ref(), shape)?;
            ms[i] = timer.median_ms(gpu, &[d], 3)?;
        }
        Ok(ms[0] <= ms[1])
    }
}
