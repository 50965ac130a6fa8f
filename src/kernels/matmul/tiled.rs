//! The tiled (workgroup-memory) matmul's configuration: its blocks per invocation, its strips
//! (depth and buffers), and the rules that pick them where nothing is measured.

use super::{Matmul, MatmulModules, MatmulSet, MatmulShape, MatmulTiles, MatmulVariant};
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Tiled products whose large blocks would number fewer than this take the small blocks.
pub(crate) const TILED_LARGE_MIN_BLOCKS: usize = 512;

/// Rows and columns per invocation of `matmul_tiled` (each 4 or 8; a workgroup owns 16 times
/// that). `WGFORMER_MATMUL_BLOCK=TM,TN` overrides the choice (tuning).
pub(super) fn tiled_block(gpu: &Gpu, tiles: MatmulTiles) -> (u32, u32) {
    let asked = gpu.settings.kernels.matmul_block;
    // The large tiles (16 or more rows per workgroup) take 128 x 64 blocks, the small 64 x 64.
    // On an H200 at 4096^3: 8x4 29.9 TFLOP/s, 4x4 23.8, 8x8 2.3 (its 64 accumulators spill).
    asked.unwrap_or(if tiles.wg_m * tiles.tm >= 16 { TILED_LARGE_BLOCK } else { TILED_SMALL_BLOCK })
}

/// How the tiled kernel stages A and B in workgroup memory: `depth` of k per strip (8 or 16),
/// and `buffers` strips held at once (1, or 2: double-buffered, one barrier per strip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strips {
    pub depth: u32,
    pub buffers: u32,
}

impl Strips {
    /// vec4 per strip array (of A, and of B): 32 per k and buffer.
    pub(super) fn vec4s(self) -> u32 {
        self.depth * 32 * self.buffers
    }
}

/// The tiled kernel's strips: `asked`, else `WGFORMER_MATMUL_STRIP` and `WGFORMER_MATMUL_BUFFERS`,
/// else 8 of k, one buffer. An error where they are not 8 or 16 and 1 or 2, or where the
/// adapter's workgroup memory is smaller than the two strip arrays (16 bytes a vec4).
pub(super) fn tiled_strips(gpu: &Gpu, asked: Option<Strips>) -> Result<Strips> {
    let k = &gpu.settings.kernels;
    let strips = asked.unwrap_or(Strips { depth: k.matmul_strip.unwrap_or(8), buffers: k.matmul_buffers.unwrap_or(1) });
    if ![8, 16].contains(&strips.depth) || ![1, 2].contains(&strips.buffers) {
        return Err(Error::shape(
            "matmul",
            format!("{strips:?}: the tiled kernel's strips take 8 or 16 of k, in 1 or 2 buffers"),
        ));
    }
    let bytes = 2 * strips.vec4s() * 16;
    if bytes > gpu.limits.max_compute_workgroup_storage_size {
        return Err(Error::shape(
            "matmul",
            format!(
                "{strips:?} need {bytes} bytes of workgroup memory, the adapter {}",
                gpu.limits.max_compute_workgroup_storage_size
            ),
        ));
    }
    Ok(strips)
}

/// The tiled kernel's default blocks (TM, TN per invocation of 16 x 16): large and small.
pub(crate) const TILED_LARGE_BLOCK: (u32, u32) = (8, 4);
pub(crate) const TILED_SMALL_BLOCK: (u32, u32) = (4, 4);

/// Blocks of C (workgroups) the tiled kernel runs `shape` in with `block` per invocation.
pub(crate) fn tiled_blocks(shape: &MatmulShape, (tm, tn): (u32, u32)) -> usize {
    shape.m.div_ceil(16 * tm as usize) * shape.n.div_ceil(16 * tn as usize) * shape.batch
}

/// The block the tiled kernel's untuned rule gives `shape` between `large` and `small`: large
/// blocks only where they make enough workgroups for a GPU.
pub(crate) fn tiled_block_rule(shape: &MatmulShape, large: (u32, u32), small: (u32, u32)) -> (u32, u32) {
    if tiled_blocks(shape, large) >= TILED_LARGE_MIN_BLOCKS {
        large
    } else {
        small
    }
}

/// A zero step uniform (`kernels::dropout::StepParams`), bound by products that draw no dropout.
pub(crate) fn no_step(gpu: &Gpu) -> crate::gpu::Held<wgpu::Buffer> {
    gpu.hold(
        gpu.uniform("matmul.no_step", &crate::kernels::dropout::StepParams { seed: 0, step: 0, shard: 0, _pad: 0 }),
    )
}

impl Matmul {
    /// The tiled kernel alone with `block` = (TM, TN) rows and columns per invocation, each 4 or
    /// 8 (tests and tuning).
    pub fn tiled(gpu: &Gpu, block: (u32, u32)) -> Result<Self> {
        Self::tiled_set(gpu, block, None)
    }

    /// [`Matmul::tiled`] with `strips` of A and B in workgroup memory; an error where the
    /// adapter's workgroup memory is too small for them.
    pub fn tiled_with_strips(gpu: &Gpu, block: (u32, u32), strips: Strips) -> Result<Self> {
        Self::tiled_set(gpu, block, Some(strips))
    }

    fn tiled_set(gpu: &Gpu, block: (u32, u32), strips: Option<Strips>) -> Result<Self> {
        let (tiles, _) = MatmulTiles::pair_for_adapter(gpu);
        let modules = MatmulModules::new(gpu, MatmulVariant::Tiled)?;
        Self::with_set(gpu, MatmulSet::build(gpu, &modules, tiles, block, strips)?)
    }
}
