//! Batched matmul with transposes, bias and accumulation: `shaders/matmul.wgsl`.

use super::{check_len, check_loop_budget, dispatch, u32_of, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

/// Mirrors `MatmulParams` in matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    flags: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    _pad: u32,
}

/// Shape and layout of one (batched) product C = op(A) * op(B) (+ bias) (+ C).
/// Strides and leading dimensions are in elements; a batch stride of 0 broadcasts an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored as (K, M) instead of (M, K).
    pub trans_a: bool,
    /// B is stored as (N, K) instead of (K, N).
    pub trans_b: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    /// Add bias[n] to every row.
    pub bias: bool,
    /// Add the product to what C holds (gradient accumulation).
    pub accumulate: bool,
}

impl MatmulShape {
    /// Densely packed operands: every batch entry follows the previous one.
    pub fn packed(
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
        trans_a: bool,
        trans_b: bool,
    ) -> Self {
        MatmulShape {
            batch,
            m,
            n,
            k,
            trans_a,
            trans_b,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            bias: false,
            accumulate: false,
        }
    }

    /// Floating-point operations of the product (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Elements each buffer must hold: (A, B, C).
    pub fn extents(&self) -> (usize, usize, usize) {
        let last = self.batch.saturating_sub(1);
        let (ar, ac) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (br, bc) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        let a = last * self.stride_a + (ar - 1) * self.lda + ac;
        let b = last * self.stride_b + (br - 1) * self.ldb + bc;
        let c = last * self.stride_c + (self.m - 1) * self.ldc + self.n;
        (a, b, c)
    }

    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape("matmul", msg));
        if self.batch == 0 || self.m == 0 || self.n == 0 || self.k == 0 {
            return bad(format!(
                "empty product: batch {} M {} N {} K {}",
                self.batch, self.m, self.n, self.k
            ));
        }
        let (a_cols, b_cols) = (
            if self.trans_a { self.m } else { self.k },
            if self.trans_b { self.k } else { self.n },
        );
        if self.lda < a_cols || self.ldb < b_cols || self.ldc < self.n {
            return bad(format!(
                "leading dimensions lda {} ldb {} ldc {} below the rows' lengths {a_cols}, {b_cols}, {}",
                self.lda, self.ldb, self.ldc, self.n
            ));
        }
        Ok(())
    }
}

/// Register-tile sizes, fixed per pipeline (WGSL override constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulTiles {
    /// Invocations per workgroup along N (each owns 4 columns).
    pub wg_n: u32,
    /// Invocations per workgroup along M (each owns `tm` rows).
    pub wg_m: u32,
    /// Rows per invocation (1..=16).
    pub tm: u32,
}

impl MatmulTiles {
    /// The tiles measured fastest for this kind of adapter. CPU adapters (lavapipe) want one row
    /// of invocations so that A loads are uniform across a subgroup; GPUs want a 2D workgroup.
    pub fn for_adapter(gpu: &Gpu) -> Self {
        if gpu.is_cpu() {
            MatmulTiles {
                wg_n: 8,
                wg_m: 1,
                tm: 8,
            }
        } else {
            MatmulTiles {
                wg_n: 16,
                wg_m: 4,
                tm: 4,
            }
        }
    }
}

/// The matmul kernel: one pipeline per (trans_a, trans_b).
pub struct Matmul {
    pipelines: [wgpu::ComputePipeline; 4],
    tiles: MatmulTiles,
    no_bias: Tensor,
}

impl Matmul {
    /// Builds the pipelines with the adapter's preferred tiles.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_tiles(gpu, MatmulTiles::for_adapter(gpu))
    }

    /// Builds the pipelines with explicit tiles (benchmarks and tuning).
    pub fn with_tiles(gpu: &Gpu, tiles: MatmulTiles) -> Result<Self> {
        if !(1..=16).contains(&tiles.tm) || tiles.wg_n == 0 || tiles.wg_m == 0 {
            return Err(Error::shape(
                "matmul",
                format!("invalid tiles {tiles:?}: tm must be 1..=16"),
            ));
        }
        let module = gpu.shader("matmul.wgsl", crate::shaders::MATMUL)?;
        let build = |ta: bool, tb: bool| {
            let constants = [
                ("TRANS_A", ta as u32 as f64),
                ("TRANS_B", tb as u32 as f64),
                ("WG_N", tiles.wg_n as f64),
                ("WG_M", tiles.wg_m as f64),
                ("TM", tiles.tm as f64),
            ];
            gpu.pipeline(&module, "matmul_fwd", &constants)
        };
        Ok(Matmul {
            pipelines: [
                build(false, false)?,
                build(false, true)?,
                build(true, false)?,
                build(true, true)?,
            ],
            tiles,
            no_bias: gpu.zeros("matmul.no_bias", 1)?,
        })
    }

    /// The tiles these pipelines were built with.
    pub fn tiles(&self) -> MatmulTiles {
        self.tiles
    }

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
        shape.check()?;
        let (na, nb, nc) = shape.extents();
        check_len("matmul", "A", a, na)?;
        check_len("matmul", "B", b, nb)?;
        check_len("matmul", "C", c, nc)?;
        let with_bias = shape.bias || bias.is_some();
        if with_bias != bias.is_some() {
            return Err(Error::shape(
                "matmul",
                "shape.bias is set but no bias tensor was given",
            ));
        }
        if let Some(bias) = bias {
            check_len("matmul", "bias", bias, shape.n)?;
        }
        // The K loop runs K/4 times, each with TM row steps; the store walks TM x 4.
        let t = self.tiles;
        let iterations = shape.k.div_ceil(4) as u64 * (t.tm as u64 + 1) + 6 * t.tm as u64;
        check_loop_budget(
            gpu,
            "matmul",
            iterations,
            &format!("K = {} with {} rows per invocation", shape.k, t.tm),
        )?;
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
        if shape.batch > max_groups {
            return Err(Error::shape(
                "matmul",
                format!(
                    "batch {} over the adapter's {max_groups} workgroups",
                    shape.batch
                ),
            ));
        }
        let u = |what, v| u32_of("matmul", what, v);
        let params = MatmulParams {
            m: u("M", shape.m)?,
            n: u("N", shape.n)?,
            k: u("K", shape.k)?,
            batch: u("batch", shape.batch)?,
            lda: u("lda", shape.lda)?,
            ldb: u("ldb", shape.ldb)?,
            ldc: u("ldc", shape.ldc)?,
            flags: with_bias as u32 | (shape.accumulate as u32) << 1,
            stride_a: u("stride_a", shape.stride_a)?,
            stride_b: u("stride_b", shape.stride_b)?,
            stride_c: u("stride_c", shape.stride_c)?,
            _pad: 0,
        };
        let groups = [
            u("groups", shape.n.div_ceil(4 * t.wg_n as usize))?,
            u("groups", shape.m.div_ceil((t.tm * t.wg_m) as usize))?,
            shape.batch as u32,
        ];
        if groups[0] as usize > max_groups || groups[1] as usize > max_groups {
            return Err(Error::shape(
                "matmul",
                format!("{groups:?} workgroups exceed the adapter's {max_groups} per dimension"),
            ));
        }
        let pipeline = &self.pipelines[(shape.trans_a as usize) << 1 | shape.trans_b as usize];
        let bias = bias.unwrap_or(&self.no_bias);
        dispatch(
            gpu,
            "matmul_fwd",
            pipeline,
            &[c, a, b, bias],
            &params,
            groups,
        )
    }
}
