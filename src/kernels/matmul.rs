//! Batched matmul with transposes, bias and accumulation: `shaders/matmul.wgsl` and
//! `shaders/matmul_sg.wgsl` (register tiles, for CPU adapters), `shaders/matmul_tiled.wgsl`
//! (workgroup-memory tiles, for GPUs).

mod params;
mod split;
mod tiled;
pub use split::default_gpu_splits;
pub(crate) use tiled::no_step;
pub use tiled::Strips;
use tiled::{tiled_block, tiled_blocks, tiled_strips, TILED_LARGE_MIN_BLOCKS};
mod tune;

use super::{check_loop_budget, dispatch_entries, u32_of, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Held, Tensor};
pub use crate::graph::params::MatmulShape;
use params::check_operands;
pub use params::MatmulExtras;
pub(crate) use params::MatmulParams;

/// Register-tile sizes, fixed per pipeline (WGSL override constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulTiles {
    /// Invocations per workgroup along N (each owns 4 columns).
    pub wg_n: u32,
    /// Invocations per workgroup along M (each owns `tm` rows).
    pub wg_m: u32,
    /// Rows per invocation (1..=32; the general and vec4 kernels take at most 16 of them).
    pub tm: u32,
}

impl MatmulTiles {
    /// The tiles measured fastest for this kind of adapter. CPU adapters (lavapipe) want one row
    /// of invocations so that A loads are uniform across a subgroup; GPUs want a 2D workgroup.
    /// `WGFORMER_MATMUL_TILES=wg_n,wg_m,tm` overrides the choice (tuning).
    pub fn for_adapter(gpu: &Gpu) -> Self {
        Self::asked(gpu).unwrap_or(Self::pair_for_adapter(gpu).0)
    }

    /// (large, small) tiles. On lavapipe 16x16-row tiles ran ViT-B/16 layers at 27 GFLOP/s but
    /// batched 17x17x24 attention products at under 1; 8x8-row tiles ran those 2.4x faster.
    /// 32 rows per invocation took the subgroup kernel from 27 to 33 GFLOP/s at 1024^3 and from
    /// 22 to 26 at 2048^3 (each B load feeds twice the FMAs); the plain kernels, slower at 32
    /// rows, run 16 of them (see `PLAIN_TM_MAX`).
    pub fn pair_for_adapter(gpu: &Gpu) -> (Self, Self) {
        if gpu.is_cpu() {
            (MatmulTiles { wg_n: 16, wg_m: 1, tm: 32 }, MatmulTiles { wg_n: 8, wg_m: 1, tm: 8 })
        } else {
            (MatmulTiles { wg_n: 16, wg_m: 4, tm: 4 }, MatmulTiles { wg_n: 8, wg_m: 4, tm: 2 })
        }
    }

    /// Large tiles twice as wide, for products of at least 1024 rows and columns whose N they
    /// divide, on adapters where the subgroup kernel runs (where they were measured): on lavapipe
    /// at 2048^3, 32x1 invocations of 32x4 ran at 23.7-27.4 GFLOP/s (median 26.5) against
    /// 21.4-26.5 (24.8) for 16x1, four interleaved rounds (the four subgroups of a workgroup
    /// share its rows of A in cache); level on the ViT-B/16 layers.
    pub fn wide_for_adapter(gpu: &Gpu) -> Option<Self> {
        gpu.is_cpu().then_some(MatmulTiles { wg_n: 32, wg_m: 1, tm: 32 })
    }

    /// The tiles the settings ask for (`WGFORMER_MATMUL_TILES`), if any.
    fn asked(gpu: &Gpu) -> Option<Self> {
        gpu.settings.kernels.matmul_tiles.map(|t| MatmulTiles { wg_n: t.wg_n, wg_m: t.wg_m, tm: t.tm })
    }
}

/// Which matmul entry point runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// `matmul_fwd`: any shape, scalar loads.
    General,
    /// `matmul_fwd_vec4`: B and C as vec4 (shapes where [`MatmulShape::vec4_aligned`] holds).
    Vec4,
    /// `matmul_fwd_sg`: vec4, plus A shared across a subgroup (needs SUBGROUP, a fixed subgroup
    /// size, and tiles with one row of invocations).
    Subgroup,
    /// `matmul_tiled`: any shape; strips of A and B staged in workgroup memory (GPUs).
    Tiled,
}

impl MatmulVariant {
    /// The cap the settings ask for (`WGFORMER_MATMUL_VARIANT`: tests of the fallbacks,
    /// comparisons), else the adapter's: workgroup memory is slow on CPU adapters (lavapipe),
    /// where register tiles shared through subgroups win; GPUs want workgroup-memory tiles.
    fn default_cap(gpu: &Gpu) -> Self {
        use crate::settings::MatmulKernel;
        match gpu.settings.kernels.matmul_kernel {
            Some(MatmulKernel::General) => MatmulVariant::General,
            Some(MatmulKernel::Vec4) => MatmulVariant::Vec4,
            Some(MatmulKernel::Subgroup) => MatmulVariant::Subgroup,
            Some(MatmulKernel::Tiled) => MatmulVariant::Tiled,
            None if gpu.is_cpu() => MatmulVariant::Subgroup,
            None => MatmulVariant::Tiled,
        }
    }
}

/// Pipelines per (trans_a, trans_b) for each variant the adapter supports, for one tile size.
struct MatmulSet {
    module: wgpu::ShaderModule,
    /// matmul_sg.wgsl where the subgroup kernel runs, matmul_tiled.wgsl where the tiled one does.
    subgroup: Option<wgpu::ShaderModule>,
    tiled: Option<wgpu::ShaderModule>,
    /// Pipelines per (variant, transposes and extras), compiled on first use: a model needs a
    /// few of the 32.
    /// Held: a set built apart from the device's (tuning, tests) may drop on any thread, and
    /// on GL dropping a pipeline needs the context.
    pipelines: [[std::sync::OnceLock<Held<wgpu::ComputePipeline>>; 8]; 4],
    tiles: MatmulTiles,
    /// (TM, TN) of the tiled pipelines.
    block: (u32, u32),
    /// The tiled pipelines' strips of A and B in workgroup memory.
    strips: Strips,
    subgroup_size: u32,
    best: MatmulVariant,
    /// The tiled module's matmul_reduce_splits (split-K's sum), compiled on first use.
    reduce: std::sync::OnceLock<Held<wgpu::ComputePipeline>>,
}

/// The matmul kernel: a set of pipelines with large register tiles, and optionally one with
/// small tiles for products too small to fill large ones (attention over few tokens).
pub struct Matmul {
    large: MatmulSet,
    small: Option<MatmulSet>,
    /// Where the subgroup kernel runs on a CPU adapter: large tiles twice as wide, for large
    /// products whose N they divide (see `WIDE_PRODUCT`).
    wide: Option<MatmulSet>,
    no_bias: Tensor,
    /// Bound where no row sums are asked for (a writable binding cannot share `no_bias`).
    no_sums: Tensor,
    /// The tiled kernel's partials binding where a product runs whole.
    no_partials: Tensor,
    /// The step uniform bound where no dropout draws from it.
    no_step: crate::gpu::Held<wgpu::Buffer>,
    /// Split-K's partial products, shared by every split product of this kernel (they run one
    /// after another); grown when a larger one is prepared.
    partials: std::sync::Mutex<Option<Tensor>>,
    /// The tile set measured fastest per class of product shapes, see `tune.rs`.
    tuned: crate::kernels::tuning::Choices,
}

/// Rows per invocation at most: matmul_sg.wgsl's TM_MAX, and matmul.wgsl's, whose kernels run
/// `min(tm, PLAIN_TM_MAX)` rows (on lavapipe at 1024^3: vec4 10.4 GFLOP/s at 16 rows against
/// 7.1 at 32, general 9.3 against 7.4).
const SG_TM_MAX: u32 = 32;
const PLAIN_TM_MAX: u32 = 16;

/// Products with M or N at most this take the small tiles.
const SMALL_PRODUCT: usize = 64;
/// Products with M and N at least this take the wide tiles where the adapter has them: the
/// wide tiles were measured to help at 2048^3 only. On the translation model's products (N 128
/// or 512, so 16 to 32 wide workgroups) interleaved runs on lavapipe were too noisy to tell the
/// two apart (15-35 GFLOP/s for both), so those keep the large tiles.
const WIDE_PRODUCT: usize = 1024;

impl Matmul {
    /// Builds the pipelines with the adapter's preferred tiles, large and small.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let cap = MatmulVariant::default_cap(gpu);
        if let Some(t) = MatmulTiles::asked(gpu) {
            return Self::build(gpu, t, cap);
        }
        let modules = MatmulModules::new(gpu, cap)?;
        let (large, small) = MatmulTiles::pair_for_adapter(gpu);
        let mut m = Self::with_set(gpu, MatmulSet::build(gpu, &modules, large, tiled_block(gpu, large), None)?)?;
        m.small = Some(MatmulSet::build(gpu, &modules, small, tiled_block(gpu, small), None)?);
        if let Some(wide) = MatmulTiles::wide_for_adapter(gpu) {
            // Measured for the subgroup kernel only: elsewhere the large tiles stay.
            let set = MatmulSet::build(gpu, &modules, wide, tiled_block(gpu, wide), None)?;
            m.wide = (set.best == MatmulVariant::Subgroup).then_some(set);
        }
        Ok(m)
    }

    /// Builds the pipelines with explicit tiles (benchmarks and tuning).
    pub fn with_tiles(gpu: &Gpu, tiles: MatmulTiles) -> Result<Self> {
        Self::build(gpu, tiles, MatmulVariant::default_cap(gpu))
    }

    /// Builds one set of pipelines, using no variant beyond `cap` (General < Vec4 < Subgroup <
    /// Tiled).
    pub fn build(gpu: &Gpu, tiles: MatmulTiles, cap: MatmulVariant) -> Result<Self> {
        let modules = MatmulModules::new(gpu, cap)?;
        Self::with_set(gpu, MatmulSet::build(gpu, &modules, tiles, tiled_block(gpu, tiles), None)?)
    }

    /// A kernel of one set of pipelines (no small or wide tiles).
    fn with_set(gpu: &Gpu, large: MatmulSet) -> Result<Self> {
        Ok(Matmul {
            large,
            small: None,
            wide: None,
            no_bias: gpu.zeros("matmul.no_bias", 4)?,
            no_sums: gpu.zeros("matmul.no_sums", 1)?,
            no_partials: gpu.zeros("matmul.no_partials", 1)?,
            no_step: no_step(gpu),
            partials: Default::default(),
            tuned: crate::kernels::tuning::Choices::new(crate::kernels::tuning::Family::Matmul),
        })
    }

    /// The pipelines `shape` runs with.
    fn set_for(&self, shape: &MatmulShape) -> &MatmulSet {
        let Some(small) = &self.small else { return &self.large };
        if self.large.best == MatmulVariant::Tiled {
            // A GPU needs many workgroups in flight: large blocks only where they make enough.
            let large = tiled_blocks(shape, self.large.block) >= TILED_LARGE_MIN_BLOCKS;
            return if large { &self.large } else { small };
        }
        if shape.m.min(shape.n) <= SMALL_PRODUCT {
            return small;
        }
        match &self.wide {
            Some(wide)
                if shape.m.min(shape.n) >= WIDE_PRODUCT && shape.n.is_multiple_of(4 * wide.tiles.wg_n as usize) =>
            {
                wide
            }
            _ => &self.large,
        }
    }

    /// The variant `shape` runs with.
    pub fn variant_for(&self, shape: &MatmulShape) -> MatmulVariant {
        self.chosen_set(shape).variant_for(shape)
    }

    /// The variant and tiles `shape` runs with, in words (benchmarks).
    pub fn describe(&self, shape: &MatmulShape) -> String {
        let set = self.chosen_set(shape);
        match set.variant_for(shape) {
            MatmulVariant::Tiled => format!("tiled, {}x{} per invocation", set.block.0, set.block.1),
            v => {
                let t = set.tiles_of(v);
                format!("{v:?}, {}x{} invocations of {}x4", t.wg_n, t.wg_m, t.tm).to_lowercase()
            }
        }
    }

    /// The tiles `shape` runs with.
    pub fn tiles_for(&self, shape: &MatmulShape) -> MatmulTiles {
        let set = self.chosen_set(shape);
        set.tiles_of(set.variant_for(shape))
    }
}

/// The shader modules every tile set shares, compiled once per `Matmul`: matmul.wgsl always,
/// matmul_sg.wgsl where the subgroup kernel may run, matmul_tiled.wgsl where the tiled one does.
struct MatmulModules {
    cap: MatmulVariant,
    plain: wgpu::ShaderModule,
    subgroup: Option<wgpu::ShaderModule>,
    tiled: Option<wgpu::ShaderModule>,
}

impl MatmulModules {
    fn new(gpu: &Gpu, cap: MatmulVariant) -> Result<Self> {
        let subgroup = cap == MatmulVariant::Subgroup && gpu.caps.subgroups;
        Ok(MatmulModules {
            cap,
            plain: gpu.shader_unchecked("matmul.wgsl", crate::shaders::MATMUL)?,
            subgroup: match subgroup {
                true => Some(gpu.shader_unchecked("matmul_sg.wgsl", crate::shaders::MATMUL_SG)?),
                false => None,
            },
            tiled: match cap == MatmulVariant::Tiled {
                true => Some(gpu.shader_unchecked("matmul_tiled.wgsl", crate::shaders::MATMUL_TILED)?),
                false => None,
            },
        })
    }
}

impl MatmulSet {
    /// The pipelines of `tiles` (and of the tiled kernel's `block`, with `strips` where given,
    /// else the settings') that `modules` can run.
    fn build(
        gpu: &Gpu,
        modules: &MatmulModules,
        tiles: MatmulTiles,
        block: (u32, u32),
        strips: Option<Strips>,
    ) -> Result<Self> {
        if !(1..=SG_TM_MAX).contains(&tiles.tm) || tiles.wg_n == 0 || tiles.wg_m == 0 {
            return Err(Error::shape("matmul", format!("invalid tiles {tiles:?}: tm must be 1..={SG_TM_MAX}")));
        }
        let cap = modules.cap;
        let sg = gpu.caps.subgroup_size.0;
        // The subgroup kernel shuffles within one subgroup of a known, fixed size, that must
        // cover whole quads of k and tile a workgroup row exactly.
        let (lo, hi) = gpu.caps.subgroup_size;
        let sg_ok = cap == MatmulVariant::Subgroup
            && gpu.caps.subgroups
            && lo == hi
            && lo >= 4
            && lo % 4 == 0
            && tiles.wg_m == 1
            && tiles.wg_n.is_multiple_of(lo);
        if ![4, 8].contains(&block.0) || ![4, 8].contains(&block.1) {
            return Err(Error::shape("matmul", format!("invalid tiled block {block:?}: TM and TN must be 4 or 8")));
        }
        let best = if cap == MatmulVariant::Tiled {
            MatmulVariant::Tiled
        } else if sg_ok {
            MatmulVariant::Subgroup
        } else if cap == MatmulVariant::General {
            MatmulVariant::General
        } else {
            MatmulVariant::Vec4
        };
        Ok(MatmulSet {
            module: modules.plain.clone(),
            subgroup: if sg_ok { modules.subgroup.clone() } else { None },
            tiled: modules.tiled.clone(),
            pipelines: Default::default(),
            tiles,
            block,
            strips: match cap {
                MatmulVariant::Tiled => tiled_strips(gpu, strips)?,
                _ => Strips { depth: 8, buffers: 1 },
            },
            subgroup_size: sg,
            best,
            reduce: Default::default(),
        })
    }

    /// The pipeline of `variant` (one this set has) for `which` = extras << 2 | trans_a << 1 |
    /// trans_b (extras: the product fuses a residual, row sums or an activation; the CPU
    /// kernels' plain pipelines are compiled without that code, see matmul_extras.wgsl).
    fn pipeline(&self, gpu: &Gpu, variant: MatmulVariant, which: usize) -> Result<&wgpu::ComputePipeline> {
        let (slot, module, entry) = match (variant, &self.subgroup, &self.tiled) {
            (MatmulVariant::Tiled, _, Some(m)) => (3, m, "matmul_tiled"),
            (MatmulVariant::Subgroup, Some(m), _) => (2, m, "matmul_fwd_sg"),
            (MatmulVariant::General, _, _) => (0, &self.module, "matmul_fwd"),
            _ => (1, &self.module, "matmul_fwd_vec4"),
        };
        let held = super::lazy(&self.pipelines[slot][which], || {
            let (t, (tm, tn)) = (self.tiles_of(variant), self.block);
            let bit = |b: usize| ((which >> b) & 1) as f64;
            let mut c = vec![("TRANS_A", bit(1)), ("TRANS_B", bit(0)), ("EXTRAS", bit(2))];
            if slot == 3 {
                let s = self.strips;
                c.extend([("TM", tm as f64), ("TN", tn as f64), ("BK", s.depth as f64)]);
                c.extend([("BUFFERS", s.buffers as f64), ("STRIP4", s.vec4s() as f64)]);
            } else {
                c.extend([("WG_N", t.wg_n as f64), ("WG_M", t.wg_m as f64), ("TM", t.tm as f64)]);
                if slot == 2 {
                    c.push(("SG", self.subgroup_size as f64));
                }
            }
            gpu.pipeline(module, entry, &c).map(|p| gpu.hold(p))
        })?;
        Ok(held)
    }

    /// The register tiles `variant` runs with: the plain kernels take at most PLAIN_TM_MAX rows.
    fn tiles_of(&self, variant: MatmulVariant) -> MatmulTiles {
        match variant {
            MatmulVariant::General | MatmulVariant::Vec4 => {
                MatmulTiles { tm: self.tiles.tm.min(PLAIN_TM_MAX), ..self.tiles }
            }
            _ => self.tiles,
        }
    }

    fn variant_for(&self, shape: &MatmulShape) -> MatmulVariant {
        if self.best == MatmulVariant::Tiled || shape.vec4_aligned() {
            self.best
        } else {
            MatmulVariant::General
        }
    }
}

impl Matmul {
    /// Prepares `c = op(a) * op(b) (+ bias)` for `shape`. The gradient of a product is two more
    /// products with transposes (dA = dC * op(B)^T, dB = op(A)^T * dC), so there is no `bwd`.
    pub fn fwd(
        &self,
        gpu: &Gpu,
        c: &Tensor,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        shape: &MatmulShape,
    ) -> Result<Dispatch> {
        self.fwd_fused(gpu, c, a, b, bias, MatmulExtras::default(), shape)
    }

    /// [`Matmul::fwd`] with what the product fuses: a residual added, op(A)'s row sums written.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd_fused(
        &self,
        gpu: &Gpu,
        c: &Tensor,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        extras: MatmulExtras,
        shape: &MatmulShape,
    ) -> Result<Dispatch> {
        check_operands(c, a, b, bias, extras, shape)?;
        let (set, _) = self.choose(gpu, shape)?;
        let mut dispatches = self.fwd_with(gpu, set, c, a, b, bias, extras, shape, 1)?;
        dispatches.pop().ok_or_else(|| Error::shape("matmul", "no dispatch was prepared"))
    }

    /// [`Matmul::fwd`] with the pipelines of `set`, on checked operands.
    #[allow(clippy::too_many_arguments)]
    fn fwd_with(
        &self,
        gpu: &Gpu,
        set: &MatmulSet,
        c: &Tensor,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        extras: MatmulExtras,
        shape: &MatmulShape,
        splits: usize,
    ) -> Result<Vec<Dispatch>> {
        let with_bias = bias.is_some();
        // Loop iterations per invocation, as llvmpipe counts them (measured on Mesa 22.3: it
        // unrolls the TM-row loops, whose trip count is a pipeline constant). The K loop runs
        // K/4 times (K/SG times in the subgroup kernel, each with SG/4 steps); the store walks
        // TM x 4. tests/kernels/kernels_matmul.rs runs each variant close to this bound.
        let t = set.tiles_of(set.variant_for(shape));
        let k_loop = match set.variant_for(shape) {
            MatmulVariant::Subgroup => {
                let sg = set.subgroup_size as usize;
                shape.k.div_ceil(sg) * (1 + sg / 4)
            }
            // Measured on llvmpipe: 10 per strip of BK = 8 (it keeps the loop over the strip).
            MatmulVariant::Tiled => shape.k.div_ceil(8) * 10 + 3,
            _ => shape.k.div_ceil(4) + 3,
        };
        // x: row blocks, y: column blocks (see the header of matmul.wgsl).
        let (rows, cols) = match set.variant_for(shape) {
            MatmulVariant::Tiled => (16 * set.block.0, 16 * set.block.1),
            _ => (t.tm * t.wg_m, 4 * t.wg_n),
        };
        let lanes = match set.variant_for(shape) {
            MatmulVariant::Tiled => 256,
            _ => t.wg_n * t.wg_m,
        };
        let sums = extras.iterations(shape, rows as usize, lanes as usize);
        let iterations = (k_loop as u64 + 6 * t.tm as u64).max(sums);
        check_loop_budget(gpu, "matmul", iterations, &format!("K = {}", shape.k))?;
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
        if shape.batch > max_groups {
            return Err(Error::shape(
                "matmul",
                format!("batch {} over the adapter's {max_groups} workgroups", shape.batch),
            ));
        }
        let u = |what, v| u32_of("matmul", what, v);
        let mut params = MatmulParams::of("matmul", shape, with_bias)?;
        // Split-K runs on the tiled kernel only: z walks (batch entry, split).
        let variant = set.variant_for(shape);
        let (k_split, splits) = split::k_split_of(shape.k, if variant == MatmulVariant::Tiled { splits } else { 1 });
        params.k_split = u("k_split", k_split)?;
        // One more column of workgroups writes the row sums.
        let groups = [
            u("groups", shape.m.div_ceil(rows as usize))?,
            u("groups", shape.n.div_ceil(cols as usize) + shape.row_sums as usize)?,
            u("groups", shape.batch * splits)?,
        ];
        if groups.iter().any(|&g| g as usize > max_groups) {
            return Err(Error::shape(
                "matmul",
                format!("{groups:?} workgroups exceed the adapter's {max_groups} per dimension"),
            ));
        }
        let extras_asked = params.flags & !3 != 0;
        let which = (extras_asked as usize) << 2 | (shape.trans_a as usize) << 1 | shape.trans_b as usize;
        let pipeline = set.pipeline(gpu, variant, which)?;
        let bias = bias.unwrap_or(&self.no_bias);
        let [side, sums] = extras.bindings(&self.no_bias, &self.no_sums);
        let tensors = [c, a, b, bias, side, sums];
        if variant != MatmulVariant::Tiled {
            let uniform = gpu.hold(gpu.uniform("matmul_fwd", &params));
            let entries = extras.entries(&tensors, &uniform, None, &self.no_step);
            return Ok(vec![dispatch_entries(gpu, "matmul_fwd", pipeline, &entries, groups)?]);
        }
        self.tiled_dispatches(gpu, set, pipeline, &tensors, extras, &params, groups, splits)
    }
}
