//! Split-K for the tiled matmul: a product whose blocks of C are too few to fill a GPU (a
//! weight gradient: M x N small, K the batch's tokens) runs its K in splits, each split's
//! workgroups writing a partial block (`matmul_tiled`), then `matmul_reduce_splits` sums them
//! into C in split order, with the bias, the accumulation and the epilogue. No atomics, so the
//! result is the same on every run. The partials live in one scratch buffer per `Matmul`.

use super::tiled::{tiled_block_rule, tiled_blocks, TILED_LARGE_BLOCK, TILED_SMALL_BLOCK};
use super::{check_operands, Matmul, MatmulExtras, MatmulParams, MatmulSet, MatmulShape, MatmulVariant};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::{dispatch_entries, grid, lazy, Dispatch};

/// Products on the tiled kernel with fewer blocks of C than this split their K (untuned: a
/// GPU wants a few workgroups per core, and WebGPU does not say how many cores there are).
const SPLIT_TARGET_BLOCKS: usize = 256;
/// The least K a split takes: shorter ones gain less than the sum costs.
const SPLIT_MIN_K: usize = 512;
/// The most splits the rule makes.
const SPLIT_MAX: usize = 16;
/// The longest strip of k of the tiled kernel (`WGFORMER_MATMUL_STRIP`): a split's k range is
/// a multiple of it, so that no strip reaches into the next split.
const STRIP: usize = 16;

/// The splits the rule (or `WGFORMER_MATMUL_SPLITS`) gives `shape` on `set`: 1 where another
/// kernel than the tiled one runs it.
pub(super) fn split_rule(gpu: &Gpu, set: &MatmulSet, shape: &MatmulShape) -> usize {
    if set.variant_for(shape) != MatmulVariant::Tiled {
        return 1;
    }
    if let Some(asked) = gpu.settings.kernels.matmul_splits {
        return asked as usize;
    }
    rule_splits(shape, set.block)
}

/// The split counts worth measuring for `shape` on `set` besides running it whole: `counts`
/// and the rule's, where the tiled kernel runs it with fewer blocks of C than fill a GPU,
/// each split at least half the rule's least K, and no count forced by the setting.
pub(super) fn split_candidates(gpu: &Gpu, set: &MatmulSet, shape: &MatmulShape, counts: &[usize]) -> Vec<usize> {
    let tiled = set.variant_for(shape) == MatmulVariant::Tiled;
    if !tiled || gpu.settings.kernels.matmul_splits.is_some() || tiled_blocks(shape, set.block) >= SPLIT_TARGET_BLOCKS {
        return Vec::new();
    }
    let mut all: Vec<usize> = counts.iter().copied().chain([rule_splits(shape, set.block)]).collect();
    all.retain(|&s| s > 1 && shape.k / s >= SPLIT_MIN_K / 2 && k_split_of(shape.k, s).1 == s);
    all.sort_unstable();
    all.dedup();
    all
}

/// The splits the untuned rule asks of `shape` on the tiled kernel with `block` per invocation.
fn rule_splits(shape: &MatmulShape, block: (u32, u32)) -> usize {
    let blocks = tiled_blocks(shape, block);
    if blocks >= SPLIT_TARGET_BLOCKS {
        return 1;
    }
    (SPLIT_TARGET_BLOCKS / blocks).min(shape.k / SPLIT_MIN_K).clamp(1, SPLIT_MAX)
}

/// The splits of K a GPU runs an f32 `shape` in with the tiled kernel's default blocks and
/// untuned rules (no settings, no measured choice): what `wgformer plan` counts.
pub fn default_gpu_splits(shape: &MatmulShape) -> usize {
    let block = tiled_block_rule(shape, TILED_LARGE_BLOCK, TILED_SMALL_BLOCK);
    k_split_of(shape.k, rule_splits(shape, block)).1
}

/// (k per split, the splits that makes) for `splits` asked of a product of `k`: each split a
/// whole number of strips; (0, 1) where there is nothing to split.
pub(super) fn k_split_of(k: usize, splits: usize) -> (usize, usize) {
    if splits <= 1 {
        return (0, 1);
    }
    let per = k.div_ceil(splits).div_ceil(STRIP) * STRIP;
    if per >= k {
        return (0, 1);
    }
    (per, k.div_ceil(per))
}

impl Matmul {
    /// The splits of K `shape` runs in where the executor prepares it: 1 unless the tiled
    /// kernel runs it with fewer than 256 blocks of C and a K of at least 1024
    /// (`WGFORMER_MATMUL_SPLITS` asks for a count instead).
    pub fn splits_for(&self, gpu: &Gpu, shape: &MatmulShape) -> usize {
        self.chosen(gpu, shape).1
    }

    /// [`Matmul::fwd_fused`] with K in `splits` splits where the tiled kernel runs the product
    /// (two dispatches: the partial products, then their sum); one dispatch elsewhere, or for
    /// 1 split. `None`: as many as [`Matmul::splits_for`] says.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd_split(
        &self,
        gpu: &Gpu,
        c: &Tensor,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        extras: MatmulExtras,
        shape: &MatmulShape,
        splits: Option<usize>,
    ) -> Result<Vec<Dispatch>> {
        check_operands(c, a, b, bias, extras, shape)?;
        let (set, chosen) = self.choose(gpu, shape)?;
        let splits = splits.unwrap_or(chosen);
        self.fwd_with(gpu, set, c, a, b, bias, extras, shape, splits)
    }

    /// The tiled kernel's dispatches: `tensors` (C, A, B, bias, side, aux) and the partials,
    /// and where `splits` > 1 the sum of the partials after it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tiled_dispatches(
        &self,
        gpu: &Gpu,
        set: &MatmulSet,
        pipeline: &wgpu::ComputePipeline,
        tensors: &[&Tensor; 6],
        extras: MatmulExtras,
        params: &MatmulParams,
        groups: [u32; 3],
        splits: usize,
    ) -> Result<Vec<Dispatch>> {
        let uniform = gpu.hold(gpu.uniform("matmul_fwd", params));
        let (m, n, batch) = (params.m as usize, params.n as usize, params.batch as usize);
        let partials = match splits {
            1 => self.no_partials.clone(),
            _ => self.partials(gpu, batch * splits * m * n)?,
        };
        let mut entries = extras.entries(tensors, &uniform, Some(&partials), &self.no_step);
        let mut out = vec![dispatch_entries(gpu, "matmul_fwd", pipeline, &entries, groups)?];
        if splits > 1 {
            // The sum reads C (accumulation), the bias, side, aux and the step (the epilogue): 0, 3..=8.
            entries.retain(|e| e.binding == 0 || e.binding >= 3);
            let reduce = set.reduce_pipeline(gpu)?;
            let groups = grid(gpu, "matmul", (batch * m * n).div_ceil(256) as u64)?;
            out.push(dispatch_entries(gpu, "matmul_reduce_splits", reduce, &entries, groups)?);
        }
        Ok(out)
    }

    /// A scratch buffer of at least `len` values for partial products: this kernel's, replaced
    /// by a larger one where it is too small (dispatches prepared before keep theirs).
    fn partials(&self, gpu: &Gpu, len: usize) -> Result<Tensor> {
        let mut held =
            self.partials.lock().map_err(|_| Error::shape("matmul", "the split-K scratch lock is poisoned"))?;
        if let Some(t) = held.as_ref().filter(|t| t.len >= len) {
            return Ok(t.clone());
        }
        let t = gpu.zeros("matmul.partials", len)?;
        *held = Some(t.clone());
        Ok(t)
    }
}

impl MatmulSet {
    /// matmul_reduce_splits of the tiled module, compiled on first use.
    fn reduce_pipeline(&self, gpu: &Gpu) -> Result<&wgpu::ComputePipeline> {
        let module = self.tiled.as_ref().ok_or_else(|| Error::shape("matmul", "split-K needs the tiled kernel"))?;
        Ok(lazy(&self.reduce, || gpu.pipeline(module, "matmul_reduce_splits", &[]).map(|p| gpu.hold(p)))?)
    }
}

#[cfg(test)]
mod tests {
    use super::{default_gpu_splits, k_split_of};
    use crate::graph::MatmulShape;

    /// What `wgformer plan` counts for GPUs: transformer-base's weight gradients at batch 128
    /// (512 x 512 x 4096, 64 small blocks) in 4 splits; ViT-Base's at batch 8 (768 x 768 x 1576,
    /// 144 small blocks) whole; products with blocks enough, or a short K, whole.
    #[test]
    fn the_default_gpu_rule_splits_weight_gradients_with_few_blocks() {
        assert_eq!(default_gpu_splits(&MatmulShape::packed(1, 512, 512, 4096, true, false)), 4);
        assert_eq!(default_gpu_splits(&MatmulShape::packed(1, 768, 768, 1576, true, false)), 1);
        assert_eq!(default_gpu_splits(&MatmulShape::packed(1, 4096, 512, 512, false, false)), 1);
        assert_eq!(default_gpu_splits(&MatmulShape::packed(1, 64, 64, 700, true, false)), 1);
        assert_eq!(default_gpu_splits(&MatmulShape::packed(1, 64, 64, 8192, true, false)), 16);
    }

    #[test]
    fn splits_are_whole_strips_and_cover_k() {
        assert_eq!(k_split_of(4096, 4), (1024, 4));
        assert_eq!(k_split_of(1000, 3), (336, 3));
        assert_eq!(k_split_of(17, 4), (16, 2));
        assert_eq!(k_split_of(16, 4), (0, 1));
        assert_eq!(k_split_of(100, 1), (0, 1));
        for (k, s) in [(1, 2), (33, 3), (4097, 16), (300, 64)] {
            let (per, n) = k_split_of(k, s);
            assert!(per == 0 || (per % 16 == 0 && per * n >= k && per * (n - 1) < k), "{k} {s}: {per} x {n}");
        }
    }
}
