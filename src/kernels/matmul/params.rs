//! What a product's dispatch carries besides its pipeline: the params every matmul shader
//! reads, the fused extras' tensors, and the checks of both against the shape.

use crate::error::{Error, Result};
use crate::gpu::Tensor;
use crate::graph::params::MatmulShape;
use crate::kernels::{check_f32_or_f16, check_len, u32_of};

/// Mirrors `MatmulParams` in matmul.wgsl (and every matmul shader: see tests/cpu/shaders_validate.rs).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    pub(super) m: u32,
    pub(super) n: u32,
    k: u32,
    pub(super) batch: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    pub(super) flags: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    pub(super) k_split: u32,
    drop_threshold: u32,
    drop_scale: f32,
    drop_salt: u32,
    _pad: u32,
}

impl MatmulParams {
    /// The params of `shape` (`bias`: add the bias row); sizes over u32 are an error of `op`.
    pub(crate) fn of(op: &'static str, shape: &MatmulShape, bias: bool) -> Result<Self> {
        let u = |what, v| u32_of(op, what, v);
        let (drop_threshold, drop_scale) = match shape.dropout {
            Some(d) => crate::graph::params::dropout_constants(d.p())?,
            None => (0, 1.0),
        };
        Ok(MatmulParams {
            m: u("M", shape.m)?,
            n: u("N", shape.n)?,
            k: u("K", shape.k)?,
            batch: u("batch", shape.batch)?,
            lda: u("lda", shape.lda)?,
            ldb: u("ldb", shape.ldb)?,
            ldc: u("ldc", shape.ldc)?,
            flags: bias as u32
                | (shape.accumulate as u32) << 1
                | (shape.residual as u32) << 2
                | (shape.row_sums as u32) << 3
                | shape.activation.map_or(0, |a| a.code()) << 4
                | (shape.activation_grad as u32) << 7
                | (shape.dropout.is_some() as u32) << 8,
            stride_a: u("stride_a", shape.stride_a)?,
            stride_b: u("stride_b", shape.stride_b)?,
            stride_c: u("stride_c", shape.stride_c)?,
            k_split: 0,
            drop_threshold,
            drop_scale,
            drop_salt: shape.dropout.map_or(0, |d| d.salt),
            _pad: 0,
        })
    }
}

/// The tensors a product fuses beyond its operands and bias (`shaders/common/matmul_extras.wgsl`),
/// present exactly where the shape's `residual`, `row_sums` and `activation` ask for them. The
/// kernels have one binding for a tensor read (residual or pre-activation) and one for a tensor
/// written (row sums or activation), so a shape asks for at most one of each.
#[derive(Clone, Copy, Default)]
pub struct MatmulExtras<'a> {
    /// Added to the result; stored like C (C is another tensor).
    pub residual: Option<&'a Tensor>,
    /// Receives the M row sums of op(A).
    pub row_sums: Option<&'a Tensor>,
    /// Receives act(C), stored like C (`activation` without `activation_grad`).
    pub activated: Option<&'a Tensor>,
    /// The activation's input, stored like C, at which its derivative multiplies C
    /// (`activation_grad`).
    pub pre_activation: Option<&'a Tensor>,
    /// The step's seed and data-parallel shard (a uniform holding
    /// [`crate::kernels::dropout::StepParams`]) that the shape's `dropout` draws from.
    pub step: Option<&'a wgpu::Buffer>,
}

impl<'a> MatmulExtras<'a> {
    /// Refuses extras that disagree with `shape` or are too short; the extra workgroup column
    /// (row sums) needs a single batch.
    pub(crate) fn check(&self, op: &'static str, shape: &MatmulShape, halves: bool) -> Result<()> {
        let (act, grad) = (shape.activation.is_some(), shape.activation_grad);
        let asked = [shape.residual, shape.row_sums, act && !grad, act && grad];
        let given = [self.residual, self.row_sums, self.activated, self.pre_activation].map(|t| t.is_some());
        if asked != given || grad && !act {
            return Err(Error::shape(
                op,
                "the shape's residual / row_sums / activation and the extra tensors disagree",
            ));
        }
        if given[0] as u8 + given[3] as u8 > 1 || given[1] as u8 + given[2] as u8 > 1 {
            return Err(Error::shape(
                op,
                "a residual and an activation's derivative (or row sums and an activation) at once",
            ));
        }
        if shape.dropout.is_some() != self.step.is_some() {
            return Err(Error::shape(op, "a dropout needs the step's uniform, and the uniform a dropout"));
        }
        let packed = shape.ldc == shape.n && (shape.batch == 1 || shape.stride_c == shape.m * shape.n);
        if shape.dropout.is_some() && (shape.accumulate || !packed) {
            return Err(Error::shape(op, "a dropout in the store needs a packed C that is not accumulated into"));
        }
        if let Some(d) = shape.dropout {
            crate::graph::params::dropout_constants(d.p())?;
        }
        let nc = shape.extents().2;
        for (name, t) in
            [("residual", self.residual), ("activation", self.activated), ("pre-activation", self.pre_activation)]
        {
            match t {
                // The f16 kernels read and write these in f16 too (mixed precision's forms).
                Some(t) if halves => check_f32_or_f16(op, name, t, nc)?,
                Some(t) => check_len(op, name, t, nc)?,
                None => {}
            }
        }
        if let Some(s) = self.row_sums {
            check_len(op, "row sums", s, shape.m)?;
            if shape.batch != 1 {
                return Err(Error::shape(op, format!("row sums of a batch of {} products", shape.batch)));
            }
        }
        Ok(())
    }

    /// Loop iterations per invocation of the row-sums workgroups, whose `lanes` invocations sum
    /// `rows` rows of K values, 8 at a time.
    pub(crate) fn iterations(&self, shape: &MatmulShape, rows: usize, lanes: usize) -> u64 {
        if self.row_sums.is_none() {
            return 0;
        }
        (rows.div_ceil(lanes) * (shape.k / 8 + 8)) as u64
    }

    /// The bindings after C, A, B and the bias: the tensor read (residual or pre-activation, or
    /// `none`) and the tensor written (row sums or activation, or `scratch`, writable).
    pub(crate) fn bindings<'t>(&self, none: &'t Tensor, scratch: &'t Tensor) -> [&'t Tensor; 2]
    where
        'a: 't,
    {
        let side = self.residual.or(self.pre_activation).unwrap_or(none);
        [side, self.row_sums.or(self.activated).unwrap_or(scratch)]
    }

    /// A matmul dispatch's bind group: C, A, B, the bias and the two extras at 0-5, the params
    /// at 6, the split-K partials at 7 (the tiled kernel), the step's uniform at 8 (`no_step`
    /// where nothing draws from it).
    pub(crate) fn entries<'t>(
        &self,
        tensors: &[&'t Tensor; 6],
        params: &'t wgpu::Buffer,
        partials: Option<&'t Tensor>,
        no_step: &'t wgpu::Buffer,
    ) -> Vec<wgpu::BindGroupEntry<'t>>
    where
        'a: 't,
    {
        let tensor =
            |binding: u32, t: &'t Tensor| wgpu::BindGroupEntry { binding, resource: t.buffer().as_entire_binding() };
        let mut entries: Vec<wgpu::BindGroupEntry> = (0..6).map(|i| tensor(i, tensors[i as usize])).collect();
        entries.push(wgpu::BindGroupEntry { binding: 6, resource: params.as_entire_binding() });
        entries.extend(partials.map(|t| tensor(7, t)));
        entries.push(wgpu::BindGroupEntry { binding: 8, resource: self.step.unwrap_or(no_step).as_entire_binding() });
        entries
    }
}

/// Refuses operands that do not fit `shape`, a bias the shape does not ask for (or the
/// reverse) and extras that disagree with it.
pub(super) fn check_operands(
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    extras: MatmulExtras,
    shape: &MatmulShape,
) -> Result<()> {
    shape.check()?;
    extras.check("matmul", shape, false)?;
    let (na, nb, nc) = shape.extents();
    check_len("matmul", "A", a, na)?;
    check_len("matmul", "B", b, nb)?;
    check_len("matmul", "C", c, nc)?;
    if shape.bias && bias.is_none() {
        return Err(Error::shape("matmul", "shape.bias is set but no bias tensor was given"));
    }
    if let Some(bias) = bias {
        check_len("matmul", "bias", bias, shape.n)?;
    }
    Ok(())
}
