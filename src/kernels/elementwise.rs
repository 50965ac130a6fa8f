//! Elementwise add, mul (with backward) and scale: `shaders/elementwise.wgsl`.

use super::{check_f32_or_f16, check_len, dispatch, grid, u32_of, Dispatch, HalfForm};
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};

const WG: u32 = 256;

/// Mirrors `EltParams` in elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct EltParams {
    n: u32,
    alpha: f32,
    nb: u32,
    _pad: u32,
}

/// The elementwise kernels, pipelines built once.
pub struct Elementwise {
    add: wgpu::ComputePipeline,
    mul: wgpu::ComputePipeline,
    mul_bwd: wgpu::ComputePipeline,
    scale: wgpu::ComputePipeline,
    relu: wgpu::ComputePipeline,
    relu_bwd: wgpu::ComputePipeline,
    silu: wgpu::ComputePipeline,
    silu_bwd: wgpu::ComputePipeline,
    add_bcast: wgpu::ComputePipeline,
    /// ReLU and SiLU with f16 operands.
    half: HalfForm,
}

impl Elementwise {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("elementwise.wgsl", crate::shaders::ELEMENTWISE)?;
        let wg = [("WG", WG as f64)];
        Ok(Elementwise {
            add: gpu.pipeline(&module, "add_fwd", &wg)?,
            mul: gpu.pipeline(&module, "mul_fwd", &wg)?,
            mul_bwd: gpu.pipeline(&module, "mul_bwd", &wg)?,
            scale: gpu.pipeline(&module, "scale_fwd", &wg)?,
            relu: gpu.pipeline(&module, "relu_fwd", &wg)?,
            relu_bwd: gpu.pipeline(&module, "relu_bwd", &wg)?,
            silu: gpu.pipeline(&module, "silu_fwd", &wg)?,
            silu_bwd: gpu.pipeline(&module, "silu_bwd", &wg)?,
            add_bcast: gpu.pipeline(&module, "add_bcast_fwd", &wg)?,
            half: HalfForm::new(&super::f16_forms::ELEMENTWISE),
        })
    }

    /// A dispatch of one invocation per element; every tensor f32, or f16 where `f16_ok`
    /// (the pipeline is then the matching f16 form's).
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        gpu: &Gpu,
        op: &'static str,
        pipeline: &wgpu::ComputePipeline,
        tensors: &[&Tensor],
        n: usize,
        alpha: f32,
        f16_ok: bool,
    ) -> Result<Dispatch> {
        for (i, t) in tensors.iter().enumerate() {
            match f16_ok {
                true => check_f32_or_f16(op, &format!("operand {i}"), t, n)?,
                false => check_len(op, &format!("operand {i}"), t, n)?,
            }
        }
        let params = EltParams { n: u32_of(op, "n", n)?, alpha, nb: 1, _pad: 0 };
        dispatch(gpu, op, pipeline, tensors, &params, grid(gpu, op, (n as u64).div_ceil(WG as u64))?)
    }

    /// out = a + b over `n` elements. (Its backward passes dout through unchanged.)
    pub fn add_fwd(&self, gpu: &Gpu, out: &Tensor, a: &Tensor, b: &Tensor, n: usize) -> Result<Dispatch> {
        self.prepare(gpu, "add_fwd", &self.add, &[out, a, b], n, 0.0, false)
    }

    /// out = a * b over `n` elements.
    pub fn mul_fwd(&self, gpu: &Gpu, out: &Tensor, a: &Tensor, b: &Tensor, n: usize) -> Result<Dispatch> {
        self.prepare(gpu, "mul_fwd", &self.mul, &[out, a, b], n, 0.0, false)
    }

    /// da = dout * b, db = dout * a.
    #[allow(clippy::too_many_arguments)]
    pub fn mul_bwd(
        &self,
        gpu: &Gpu,
        da: &Tensor,
        db: &Tensor,
        dout: &Tensor,
        a: &Tensor,
        b: &Tensor,
        n: usize,
    ) -> Result<Dispatch> {
        self.prepare(gpu, "mul_bwd", &self.mul_bwd, &[da, db, dout, a, b], n, 0.0, false)
    }

    /// out = alpha * a. Its backward is the same call on dout.
    pub fn scale_fwd(&self, gpu: &Gpu, out: &Tensor, a: &Tensor, alpha: f32, n: usize) -> Result<Dispatch> {
        self.prepare(gpu, "scale_fwd", &self.scale, &[out, a], n, alpha, false)
    }

    /// out = max(x, 0); each f32 or f16.
    pub fn relu_fwd(&self, gpu: &Gpu, out: &Tensor, x: &Tensor, n: usize) -> Result<Dispatch> {
        self.activation(gpu, "relu_fwd", &self.relu, &[out, x], n)
    }

    /// dx = dy where x > 0, else 0; each f32 or f16.
    pub fn relu_bwd(&self, gpu: &Gpu, dx: &Tensor, x: &Tensor, dy: &Tensor, n: usize) -> Result<Dispatch> {
        self.activation(gpu, "relu_bwd", &self.relu_bwd, &[dx, x, dy], n)
    }

    /// out = x sigmoid(x) (SiLU); each f32 or f16.
    pub fn silu_fwd(&self, gpu: &Gpu, out: &Tensor, x: &Tensor, n: usize) -> Result<Dispatch> {
        self.activation(gpu, "silu_fwd", &self.silu, &[out, x], n)
    }

    /// dx = dy s (1 + x (1 - s)), s = sigmoid(x); each f32 or f16.
    pub fn silu_bwd(&self, gpu: &Gpu, dx: &Tensor, x: &Tensor, dy: &Tensor, n: usize) -> Result<Dispatch> {
        self.activation(gpu, "silu_bwd", &self.silu_bwd, &[dx, x, dy], n)
    }

    /// An activation's dispatch (ReLU, SiLU) of `tensors` (out, x, and dy in the backward),
    /// each f32 or f16.
    fn activation(
        &self,
        gpu: &Gpu,
        op: &'static str,
        f32_form: &wgpu::ComputePipeline,
        tensors: &[&Tensor],
        n: usize,
    ) -> Result<Dispatch> {
        // In the order of the f16 form's aliases: InT, OutT, DyT.
        let typed: Vec<&Tensor> = [1, 0, 2].iter().filter_map(|&i| tensors.get(i).copied()).collect();
        let pipeline = self.half.for_types(gpu, &typed, f32_form, op, &[("WG", WG as f64)])?;
        self.prepare(gpu, op, &pipeline, tensors, n, 0.0, true)
    }

    /// `out[i]` = `a[i]` + `b[i % nb]` over `n` elements: b (nb elements) repeated over a's rows.
    pub fn add_bcast_fwd(
        &self,
        gpu: &Gpu,
        out: &Tensor,
        a: &Tensor,
        b: &Tensor,
        n: usize,
        nb: usize,
    ) -> Result<Dispatch> {
        let op = "add_bcast_fwd";
        check_len(op, "out", out, n)?;
        check_len(op, "a", a, n)?;
        check_len(op, "b", b, nb)?;
        if nb == 0 || !n.is_multiple_of(nb) {
            return Err(crate::error::Error::shape(op, format!("{nb} values do not tile {n}")));
        }
        let params = EltParams { n: u32_of(op, "n", n)?, alpha: 0.0, nb: u32_of(op, "nb", nb)?, _pad: 0 };
        dispatch(gpu, op, &self.add_bcast, &[out, a, b], &params, grid(gpu, op, (n as u64).div_ceil(WG as u64))?)
    }
}
