//! Fused attention, forward and backward, without the (Tq x Tk) score matrix, in three
//! variants ([`Variant`]): `shaders/attention.wgsl` (one row per invocation, the fallback that
//! runs everywhere), `shaders/attention_sg.wgsl` where the adapter has subgroups of one fixed
//! size (rows of a block share the other side's rows through subgroup shuffles; the fastest on
//! lavapipe), and `shaders/attention_tiled.wgsl`, blocked for GPUs (the other side's rows staged
//! in workgroup memory a tile at a time). Layout (B, T, H, D), the output of a Linear layer as
//! it is. Where attention is tuned (GPUs; `kernels::tuning`) every variant is built and each
//! class of shapes runs the one measured fastest (`attention/tune.rs`); elsewhere the rule's.
//! `WGFORMER_ATTENTION_VARIANT=rows|subgroup|tiled` picks one.

use super::{
    check_f32_or_f16, check_len, check_loop_budget, check_typed, dispatch, grid, lazy, u32_of, Dispatch, HalfForm,
};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
pub use crate::graph::AttentionShape;
use std::sync::OnceLock;

mod tune;

const WG: u32 = 64;
/// The head dimensions with a pipeline (D is a pipeline constant so the driver unrolls it).
pub use crate::graph::params::ATTENTION_HEAD_DIMS as HEAD_DIMS;

/// Mirrors `AttnParams` in attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AttnParams {
    batch: u32,
    heads: u32,
    tq: u32,
    tk: u32,
    causal: u32,
    has_lens: u32,
    scale: f32,
    _pad: u32,
}

/// The entry points of attention.wgsl; attention_sg.wgsl has all but `Delta`.
#[derive(Clone, Copy)]
enum Entry {
    Fwd = 0,
    Delta = 1,
    Dq = 2,
    Dkv = 3,
}

impl Entry {
    fn name(self) -> &'static str {
        ["attention_fwd", "attention_delta", "attention_dq", "attention_dkv"][self as usize]
    }
}

/// Pipelines per (head dim, entry point), each compiled on first use: a model uses one head
/// dim, and building all 28 up front cost 0.65 s on lavapipe at every start.
type Lazy = [[OnceLock<wgpu::ComputePipeline>; 4]; HEAD_DIMS.len()];

/// The fused kernels' variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// attention.wgsl: one row per invocation, no workgroup memory; runs everywhere.
    Rows,
    /// attention_sg.wgsl: blocks of rows sharing the other side through subgroup shuffles;
    /// needs subgroups of one fixed size (falls back to `Rows` without them).
    Subgroup,
    /// attention_tiled.wgsl: the other side staged in workgroup memory, tile by tile.
    Tiled,
}

impl Variant {
    /// The name `WGFORMER_ATTENTION_VARIANT` and reports use.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Rows => "rows",
            Variant::Subgroup => "subgroup",
            Variant::Tiled => "tiled",
        }
    }
}

/// vec4s of one staged tile in attention_tiled.wgsl (its TILE4).
const TILE4: usize = 480;

/// Rows per staged tile of attention_tiled.wgsl for head dim `d`: the largest power of two up
/// to 64 whose tile fits TILE4 vec4s.
fn tile_rows(d: usize) -> usize {
    let mut bk = 64;
    while bk * d / 4 > TILE4 {
        bk /= 2;
    }
    bk
}

/// Rows each invocation of attention_sg.wgsl owns (its constant R): on lavapipe, B8 H8 T256
/// D64, 1 / 2 / 4 rows ran the forward at 21.5 / 31.6 / 37-38.5 GFLOP/s and forward + backward
/// at 22.7-23.4 / - / 32.5-32.9 (every K and V row a lane loads now serves 4 queries).
const SG_ROWS_PER_LANE: usize = 4;

/// The subgroup variant: its subgroup size, module and pipelines.
struct Subgroups {
    size: usize,
    module: wgpu::ShaderModule,
    pipelines: Lazy,
    half: HalfForm,
}

/// The tiled variant's module and pipelines.
struct Tiled {
    module: wgpu::ShaderModule,
    pipelines: Lazy,
    half: HalfForm,
}

/// The attention kernels, for head dims 16, 32, 64 and 128.
pub struct Attention {
    module: wgpu::ShaderModule,
    pipelines: Lazy,
    /// Every variant has forms with q, k and v, o, and the gradients (do, dq, dk, dv) in f16
    /// (mixed precision), each set on its own.
    half: HalfForm,
    /// When the subgroup variant runs here.
    subgroup: Option<Subgroups>,
    /// When the tiled variant runs here.
    tiled: Option<Tiled>,
    /// The variant the rule picks (asked for, or the adapter's default).
    rule: Variant,
    /// True when a variant was asked for: nothing is measured.
    fixed: bool,
    /// The variant measured fastest per class of shapes, see `attention/tune.rs`.
    tuned: super::tuning::Choices,
    no_lens: Tensor,
}

/// The variant wanted: subgroups on CPU adapters (on lavapipe they ran at 4-6x the plain
/// kernels' rate, on an H200 at 0.5-0.9x), rows elsewhere until the tiled kernels are measured
/// on a GPU; `WGFORMER_ATTENTION_VARIANT=rows|subgroup|tiled` overrides the choice.
fn wanted_variant(gpu: &Gpu) -> Result<(Variant, bool)> {
    use crate::settings::AttentionKernel;
    Ok(match gpu.settings.kernels.attention {
        Some(AttentionKernel::Rows) => (Variant::Rows, true),
        Some(AttentionKernel::Subgroup) => (Variant::Subgroup, true),
        Some(AttentionKernel::Tiled) => (Variant::Tiled, true),
        _ if gpu.is_cpu() => (Variant::Subgroup, false),
        _ => (Variant::Rows, false),
    })
}

/// The subgroup size when the subgroup kernels can run: one known size dividing the workgroup.
fn subgroup_size(gpu: &Gpu) -> Option<usize> {
    let (lo, hi) = gpu.caps.subgroup_size;
    let ok = gpu.caps.subgroups && lo == hi && lo >= 1 && WG.is_multiple_of(lo);
    ok.then_some(lo as usize)
}

impl Attention {
    /// The kernels of the variant wanted here (see [`Variant`] and the module docs); where
    /// attention is tuned (`kernels::tuning`) every variant that runs here, the fastest
    /// measured per class of shapes.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let (rule, asked) = wanted_variant(gpu)?;
        if asked || !super::tuning::enabled(gpu, super::tuning::Family::Attention) {
            return Self::with_variant(gpu, rule);
        }
        let mut all = Self::build(gpu, true, true)?;
        all.rule = rule;
        all.fixed = false;
        Ok(all)
    }

    /// `allow` true: the subgroup variant wherever it can run; false: only the plain kernels.
    pub fn with_subgroups(gpu: &Gpu, allow: bool) -> Result<Self> {
        Self::with_variant(gpu, if allow { Variant::Subgroup } else { Variant::Rows })
    }

    /// The kernels of `variant` (the subgroup one falls back to rows where it cannot run);
    /// tests run every variant on any adapter.
    pub fn with_variant(gpu: &Gpu, variant: Variant) -> Result<Self> {
        let mut one = Self::build(gpu, variant == Variant::Subgroup, variant == Variant::Tiled)?;
        one.rule = one.variant_built();
        Ok(one)
    }

    /// The plain kernels, plus the subgroup and the tiled ones where asked for (and, for
    /// subgroups, where they run).
    fn build(gpu: &Gpu, subgroups: bool, tiled: bool) -> Result<Self> {
        let module = gpu.shader("attention.wgsl", crate::shaders::ATTENTION)?;
        let tiled = match tiled {
            true => Some(Tiled {
                module: gpu.shader("attention_tiled.wgsl", crate::shaders::ATTENTION_TILED)?,
                pipelines: Default::default(),
                half: HalfForm::new(&super::f16_forms::ATTENTION_TILED),
            }),
            false => None,
        };
        let subgroup = match subgroup_size(gpu).filter(|_| subgroups) {
            Some(size) => Some(Subgroups {
                size,
                // Every index in attention_sg.wgsl is clamped, so it runs without bounds checks.
                module: gpu.shader_unchecked("attention_sg.wgsl", crate::shaders::ATTENTION_SG)?,
                pipelines: Default::default(),
                half: HalfForm::new(&super::f16_forms::ATTENTION_SG).without_bounds_checks(),
            }),
            None => None,
        };
        Ok(Attention {
            module,
            pipelines: Default::default(),
            half: HalfForm::new(&super::f16_forms::ATTENTION),
            subgroup,
            tiled,
            rule: Variant::Rows,
            fixed: true,
            tuned: super::tuning::Choices::new(super::tuning::Family::Attention),
            no_lens: gpu.zeros_u32("attention.no_lens", 1)?,
        })
    }

    /// True when the subgroup kernels run on this adapter.
    pub fn uses_subgroups(&self) -> bool {
        self.subgroup.is_some()
    }

    /// The variant that runs where nothing was measured: the one asked for, or the adapter's
    /// default ([`Attention::variant_for`] gives the one a shape runs).
    pub fn variant(&self) -> Variant {
        self.rule
    }

    /// The most capable variant built.
    fn variant_built(&self) -> Variant {
        match (&self.subgroup, &self.tiled) {
            (Some(_), _) => Variant::Subgroup,
            (None, Some(_)) => Variant::Tiled,
            _ => Variant::Rows,
        }
    }

    /// The pipeline of `entry` for head dim index `dim` over `rows` rows per (batch, head): the
    /// variant's where it runs (`sg` true and not `Delta`), else the plain one; with how it maps
    /// rows to invocations. The subgroup kernels pad rows to blocks of 32, so fewer rows (one
    /// query per step in decoding) take the plain kernels: padding made decoding's attention
    /// several times slower on lavapipe.
    fn pipeline(
        &self,
        gpu: &Gpu,
        variant: Variant,
        dim: usize,
        entry: Entry,
        rows: usize,
        halves: [&Tensor; 3],
    ) -> Result<(wgpu::ComputePipeline, RowLayout)> {
        let d = HEAD_DIMS[dim] as f64;
        // Head dim 128 keeps R rows of 128 floats per lane in several arrays (about 6 KiB of
        // private memory per invocation): on an H200 (Vulkan, driver 580) its first dispatch
        // lost the device, so GPUs take the plain kernels there.
        let fits = gpu.is_cpu() || HEAD_DIMS[dim] <= 64;
        let delta = matches!(entry, Entry::Delta);
        // The f16 form that `halves` (q, o, do: the aliases Qkv4, O4, Grad4) ask for, or the
        // f32 form's pipeline from its cache.
        let get = |module: &wgpu::ShaderModule,
                   lazy_cell: &OnceLock<wgpu::ComputePipeline>,
                   form: &HalfForm,
                   c: &[(&str, f64)]| {
            match form.for_halves(gpu, &halves, entry.name(), c)? {
                Some(p) => Ok(p),
                None => lazy(lazy_cell, || gpu.pipeline(module, entry.name(), c)).cloned(),
            }
        };
        if let (Some(t), Variant::Tiled, false) = (&self.tiled, variant, delta) {
            let c = [("WG", WG as f64), ("D", d), ("BK", tile_rows(HEAD_DIMS[dim]) as f64)];
            let p = get(&t.module, &t.pipelines[dim][entry as usize], &t.half, &c)?;
            // One workgroup per WG rows of a (batch, head): rows padded to WG.
            return Ok((p, RowLayout { block: WG as usize, per_invocation: 1 }));
        }
        match &self.subgroup {
            Some(g) if variant == Variant::Subgroup && fits && !delta && rows >= g.size * SG_ROWS_PER_LANE => {
                let c = [("WG", WG as f64), ("D", d), ("SG", g.size as f64)];
                let p = get(&g.module, &g.pipelines[dim][entry as usize], &g.half, &c)?;
                Ok((p, RowLayout { block: g.size * SG_ROWS_PER_LANE, per_invocation: SG_ROWS_PER_LANE }))
            }
            _ => {
                let c = [("WG", WG as f64), ("D", d)];
                let p = get(&self.module, &self.pipelines[dim][entry as usize], &self.half, &c)?;
                Ok((p, RowLayout::PLAIN))
            }
        }
    }

    /// Checks tensors the kernels read in one type (q, k and v; the gradients): all f32 or
    /// all f16, each of its length.
    fn same_type(op: &'static str, what: &str, tensors: &[(&str, &Tensor, usize)]) -> Result<()> {
        for (name, t, n) in tensors {
            check_f32_or_f16(op, name, t, *n)?;
        }
        if tensors.iter().any(|(_, t, _)| t.dtype != tensors[0].1.dtype) {
            return Err(Error::shape(op, format!("{what} must all be f32 or all f16")));
        }
        Ok(())
    }

    /// Checks the shape; returns the head dim's index and the params.
    fn checked(&self, gpu: &Gpu, s: &AttentionShape, key_lens: Option<&Tensor>) -> Result<(usize, AttnParams)> {
        let op = "attention";
        let dim = HEAD_DIMS.iter().position(|&d| d == s.head_dim).ok_or_else(|| {
            Error::shape(op, format!("head dimension {} has no kernel (one of {HEAD_DIMS:?})", s.head_dim))
        })?;
        if s.batch == 0 || s.heads == 0 || s.tq == 0 || s.tk == 0 {
            return Err(Error::shape(op, format!("empty attention {s:?}")));
        }
        if s.causal && s.tq > s.tk {
            return Err(Error::shape(op, format!("a causal mask needs Tq <= Tk, got {} > {}", s.tq, s.tk)));
        }
        if let Some(l) = key_lens {
            check_typed(op, "key_lens", l, s.batch, DType::U32)?;
        }
        // Rows walk all keys (forward, dq) or all queries (dk, dv); the subgroup kernels also
        // count one iteration per block of rows.
        let longest = s.tq.max(s.tk) as u64;
        let blocks = self.subgroup.as_ref().map_or(0, |g| longest.div_ceil(g.size as u64));
        check_loop_budget(gpu, op, longest + blocks + 8, &format!("sequences of {} and {}", s.tq, s.tk))?;
        let u = |v| u32_of(op, "size", v);
        let params = AttnParams {
            batch: u(s.batch)?,
            heads: u(s.heads)?,
            tq: u(s.tq)?,
            tk: u(s.tk)?,
            causal: s.causal as u32,
            has_lens: key_lens.is_some() as u32,
            scale: s.scale() as f32,
            _pad: 0,
        };
        Ok((dim, params))
    }

    fn groups(gpu: &Gpu, invocations: usize) -> Result<[u32; 3]> {
        grid(gpu, "attention", (invocations as u64).div_ceil(WG as u64))
    }

    /// o (B, Tq, H, D) and lse (B, H, Tq) from q, k, v (all f32, or all f16 in mixed
    /// precision; o too may be f16); `key_lens` (B, u32) masks padding keys.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd(
        &self,
        gpu: &Gpu,
        o: &Tensor,
        lse: &Tensor,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_lens: Option<&Tensor>,
        s: &AttentionShape,
    ) -> Result<Dispatch> {
        let variant = self.choose(gpu, s, key_lens.is_some())?;
        self.fwd_as(gpu, variant, [o, lse, q, k, v], key_lens, s)
    }

    /// [`Attention::fwd`] with the kernels of `variant`.
    fn fwd_as(
        &self,
        gpu: &Gpu,
        variant: Variant,
        [o, lse, q, k, v]: [&Tensor; 5],
        key_lens: Option<&Tensor>,
        s: &AttentionShape,
    ) -> Result<Dispatch> {
        let (dim, params) = self.checked(gpu, s, key_lens)?;
        let (nq, nk) = (s.batch * s.tq * s.heads * s.head_dim, s.batch * s.tk * s.heads * s.head_dim);
        check_f32_or_f16("attention_fwd", "o", o, nq)?;
        check_len("attention_fwd", "lse", lse, s.batch * s.heads * s.tq)?;
        Self::same_type("attention_fwd", "q, k and v", &[("q", q, nq), ("k", k, nk), ("v", v, nk)])?;
        let lens = key_lens.unwrap_or(&self.no_lens);
        // No gradient here: lse (f32) keeps the Grad4 alias f32.
        let halves = [q, o, lse];
        let (pipeline, layout) = self.pipeline(gpu, variant, dim, Entry::Fwd, s.tq, halves)?;
        let invocations = layout.invocations(s.batch * s.heads, s.tq);
        dispatch(gpu, "attention_fwd", &pipeline, &[o, lse, q, k, v, lens], &params, Self::groups(gpu, invocations)?)
    }

    /// The backward: delta = rowsum(do * o) into `delta` (B, H, Tq), then dq, then dk and dv.
    /// q, k and v are all f32 or all f16, as are do, dq, dk and dv; o is either.
    #[allow(clippy::too_many_arguments)]
    pub fn bwd(
        &self,
        gpu: &Gpu,
        [dq, dk, dv]: [&Tensor; 3],
        delta: &Tensor,
        [q, k, v, o, dout, lse]: [&Tensor; 6],
        key_lens: Option<&Tensor>,
        s: &AttentionShape,
    ) -> Result<[Dispatch; 3]> {
        let variant = self.choose(gpu, s, key_lens.is_some())?;
        self.bwd_as(gpu, variant, [dq, dk, dv], delta, [q, k, v, o, dout, lse], key_lens, s)
    }

    /// [`Attention::bwd`] with the kernels of `variant`.
    #[allow(clippy::too_many_arguments)]
    fn bwd_as(
        &self,
        gpu: &Gpu,
        variant: Variant,
        [dq, dk, dv]: [&Tensor; 3],
        delta: &Tensor,
        [q, k, v, o, dout, lse]: [&Tensor; 6],
        key_lens: Option<&Tensor>,
        s: &AttentionShape,
    ) -> Result<[Dispatch; 3]> {
        let (dim, params) = self.checked(gpu, s, key_lens)?;
        let (nq, nk, rows) =
            (s.batch * s.tq * s.heads * s.head_dim, s.batch * s.tk * s.heads * s.head_dim, s.batch * s.heads * s.tq);
        let op = "attention_bwd";
        Self::same_type(op, "q, k and v", &[("q", q, nq), ("k", k, nk), ("v", v, nk)])?;
        let grads = [("do", dout, nq), ("dq", dq, nq), ("dk", dk, nk), ("dv", dv, nk)];
        Self::same_type(op, "do, dq, dk and dv", &grads)?;
        check_f32_or_f16(op, "o", o, nq)?;
        let halves = [q, o, dout];
        check_len("attention_bwd", "lse", lse, rows)?;
        check_len("attention_bwd", "delta", delta, rows)?;
        let lens = key_lens.unwrap_or(&self.no_lens);
        let (delta_pipe, _) = self.pipeline(gpu, variant, dim, Entry::Delta, s.tq, halves)?;
        let d0 = dispatch(gpu, "attention_delta", &delta_pipe, &[delta, dout, o], &params, Self::groups(gpu, rows)?)?;
        let bh = s.batch * s.heads;
        let (dq_pipe, q_layout) = self.pipeline(gpu, variant, dim, Entry::Dq, s.tq, halves)?;
        let (dkv_pipe, k_layout) = self.pipeline(gpu, variant, dim, Entry::Dkv, s.tk, halves)?;
        let (q_rows, k_rows) = (q_layout.invocations(bh, s.tq), k_layout.invocations(bh, s.tk));
        let d1 = dispatch(
            gpu,
            "attention_dq",
            &dq_pipe,
            &[dq, q, k, v, dout, lse, delta, lens],
            &params,
            Self::groups(gpu, q_rows)?,
        )?;
        let d2 = dispatch(
            gpu,
            "attention_dkv",
            &dkv_pipe,
            &[dk, dv, q, k, v, dout, lse, delta, lens],
            &params,
            Self::groups(gpu, k_rows)?,
        )?;
        Ok([d0, d1, d2])
    }
}

/// How rows map to invocations: rows per (batch, head) are padded to a multiple of `block`,
/// and each invocation owns `per_invocation` of them.
#[derive(Clone, Copy)]
struct RowLayout {
    block: usize,
    per_invocation: usize,
}

impl RowLayout {
    /// The plain kernels: one row per invocation, no padding.
    const PLAIN: RowLayout = RowLayout { block: 1, per_invocation: 1 };

    /// Invocations for `count` rows in each of `bh` (batch, head) pairs.
    fn invocations(self, bh: usize, count: usize) -> usize {
        bh * count.next_multiple_of(self.block) / self.per_invocation
    }
}
