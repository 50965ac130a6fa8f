//! Products of f16 operands accumulated and written in f32, the matmul of mixed-precision
//! training: `shaders/matmul_coop.wgsl` on matrix units (tensor cores and their kin, through
//! wgpu's cooperative matrices) where the device has a 16x16x16 f16 -> f32 configuration and
//! a fixed subgroup size, else `shaders/matmul_f16.wgsl` (workgroup-memory tiles, f32
//! arithmetic). Both need SHADER_F16. `WGFORMER_MATMUL_F16=tiled|coop` asks for one.

use super::matmul::{MatmulExtras, MatmulParams};
use super::{check_f32_or_f16, check_len, check_loop_budget, check_typed, dispatch_entries, lazy, Dispatch, HalfForm};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::graph::MatmulShape;
use std::sync::OnceLock;

/// The f16 matmul's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F16Variant {
    /// matmul_f16.wgsl: 64 x 64 blocks staged in workgroup memory, f32 arithmetic; runs
    /// wherever SHADER_F16 does.
    Tiled,
    /// matmul_coop.wgsl: 32 x 32 blocks of 16 x 16 cooperative-matrix tiles on matrix units.
    Coop,
}

impl F16Variant {
    /// The name `WGFORMER_MATMUL_F16` and reports use.
    pub fn name(self) -> &'static str {
        match self {
            F16Variant::Tiled => "tiled",
            F16Variant::Coop => "coop",
        }
    }
}

/// Rows and columns of C per workgroup: (tiled, coop).
const BLOCK: [usize; 2] = [64, 32];

/// The f16 matmul on one device.
pub struct MatmulF16 {
    module: wgpu::ShaderModule,
    variant: F16Variant,
    /// The coop kernel's subgroup size (its workgroup size).
    subgroup: u32,
    /// Pipelines per transposes (trans_a << 1 | trans_b), compiled on first use.
    pipelines: [OnceLock<wgpu::ComputePipeline>; 4],
    /// The forms with C, the side tensor (residual or pre-activation) or the activation in
    /// f16 (tensors mixed precision keeps in half precision).
    half: HalfForm,
    no_bias: Tensor,
    /// Bound where no row sums are asked for (writable, so not `no_bias`).
    no_sums: Tensor,
    /// The step uniform bound where no dropout draws from it.
    no_step: crate::gpu::Held<wgpu::Buffer>,
}

/// The subgroup size the coop kernel runs with, where it can run on `gpu`: a 16x16x16 f16 ->
/// f32 configuration and one fixed subgroup size (the kernel's workgroup is one subgroup).
pub fn coop_subgroup(gpu: &Gpu) -> Option<u32> {
    let (lo, hi) = gpu.caps.subgroup_size;
    let fits = gpu.caps.f16 && gpu.caps.coop_f16_16() && lo == hi && lo >= 1;
    (fits && lo <= gpu.limits.max_compute_invocations_per_workgroup).then_some(lo)
}

impl MatmulF16 {
    /// The kernels asked for (`WGFORMER_MATMUL_F16`), else matrix units where the device has
    /// them, else the tiled kernel. An error where the adapter has no f16 shaders.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        use crate::settings::F16Products;
        let asked = match gpu.settings.kernels.f16_products {
            Some(F16Products::Tiled) => Some(F16Variant::Tiled),
            Some(F16Products::Coop) => Some(F16Variant::Coop),
            // Mixed precision's rounded operands (kernels::F16Set); this kernel's default here.
            Some(F16Products::Rounded) | None => None,
        };
        let best = if coop_subgroup(gpu).is_some() { F16Variant::Coop } else { F16Variant::Tiled };
        Self::with_variant(gpu, asked.unwrap_or(best))
    }

    /// The kernels of `variant`; an error where they cannot run here.
    pub fn with_variant(gpu: &Gpu, variant: F16Variant) -> Result<Self> {
        if !gpu.caps.f16 {
            return Err(Error::Unsupported { what: "f16 arithmetic (SHADER_F16)", adapter: gpu.describe() });
        }
        let family = match variant {
            F16Variant::Tiled => &super::f16_forms::MATMUL_F16,
            F16Variant::Coop => &super::f16_forms::MATMUL_COOP,
        };
        let (file, source) = (family.file, family.source);
        let (module, subgroup) = match variant {
            F16Variant::Tiled => (gpu.shader(file, source)?, 0),
            F16Variant::Coop => {
                let sg = coop_subgroup(gpu).ok_or_else(|| Error::Unsupported {
                    what: "cooperative matrices of 16x16x16 f16 -> f32 with a fixed subgroup size",
                    adapter: gpu.describe(),
                })?;
                (gpu.shader(file, source)?, sg)
            }
        };
        Ok(MatmulF16 {
            module,
            variant,
            subgroup,
            pipelines: Default::default(),
            half: HalfForm::new(family),
            no_bias: gpu.zeros("matmul_f16.no_bias", 1)?,
            no_sums: gpu.zeros("matmul_f16.no_sums", 1)?,
            no_step: super::matmul::no_step(gpu),
        })
    }

    /// The kernels that run.
    pub fn variant(&self) -> F16Variant {
        self.variant
    }

    /// Prepares `c = op(a) * op(b) (+ bias) (+ c)` for `shape`: `a` and `b` f16, `bias` f32,
    /// `c` f32 or f16 (rounded from the f32 sums).
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

    /// [`MatmulF16::fwd`] with what the product fuses (see [`MatmulExtras`]); the residual and
    /// the row sums are f32.
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
        const OP: &str = "matmul_f16";
        shape.check()?;
        extras.check(OP, shape, true)?;
        let (na, nb, nc) = shape.extents();
        check_typed(OP, "A", a, na, DType::F16)?;
        check_typed(OP, "B", b, nb, DType::F16)?;
        check_f32_or_f16(OP, "C", c, nc)?;
        if shape.bias != bias.is_some() {
            return Err(Error::shape(OP, "shape.bias and the bias tensor disagree"));
        }
        if let Some(bias) = bias {
            check_len(OP, "bias", bias, shape.n)?;
        }
        // Per invocation and strip of 16 along k: the staging loop, then 16 steps of 4 + 4
        // loads and 16 FMAs (the tiled kernel; the coop kernel's lanes do less).
        let block = BLOCK[self.variant as usize];
        let lanes = if self.variant == F16Variant::Tiled { 256 } else { self.subgroup as usize };
        let iterations = (shape.k.div_ceil(16) as u64 * 420 + 40).max(extras.iterations(shape, block, lanes));
        check_loop_budget(gpu, OP, iterations, &format!("K = {}", shape.k))?;
        let params = MatmulParams::of(OP, shape, shape.bias)?;
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
        // One more column of workgroups writes the row sums.
        let groups = [shape.m.div_ceil(block), shape.n.div_ceil(block) + shape.row_sums as usize, shape.batch];
        if groups.iter().any(|&g| g > max_groups) {
            return Err(Error::shape(
                OP,
                format!("{groups:?} workgroups exceed the adapter's {max_groups} per dimension"),
            ));
        }
        let which = (shape.trans_a as usize) << 1 | shape.trans_b as usize;
        let mut constants = vec![("TRANS_A", (which >> 1) as f64), ("TRANS_B", (which & 1) as f64)];
        let entry = match self.variant {
            F16Variant::Tiled => "matmul_f16",
            F16Variant::Coop => {
                constants.push(("SG", self.subgroup as f64));
                "matmul_coop"
            }
        };
        let [side, sums] = extras.bindings(&self.no_bias, &self.no_sums);
        let pipeline = match self.half.for_halves(gpu, &[c, side, sums], entry, &constants)? {
            Some(p) => p,
            None => lazy(&self.pipelines[which], || gpu.pipeline(&self.module, entry, &constants))?.clone(),
        };
        let groups = [groups[0] as u32, groups[1] as u32, groups[2] as u32];
        let tensors = [c, a, b, bias.unwrap_or(&self.no_bias), side, sums];
        let uniform = gpu.hold(gpu.uniform(OP, &params));
        dispatch_entries(gpu, OP, &pipeline, &extras.entries(&tensors, &uniform, None, &self.no_step), groups)
    }
}
