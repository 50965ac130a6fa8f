//! The parameters that describe an op: shapes and settings shared by the graph, the CPU
//! reference, the kernels and the executor. Every layer imports them from here, downward.

use crate::error::{Error, Result};

/// Head dims the fused attention op (and its kernels) support.
pub const ATTENTION_HEAD_DIMS: [usize; 4] = [16, 32, 64, 128];

/// How [`Graph::attention`](crate::graph::Graph::attention) builds attention without dropout:
/// the fused op (no (Tq x Tk) tensor, kernels/attention.rs), or the composed path (matmul,
/// scale, mask, softmax, matmul), which can be faster on GPUs while its scores fit one
/// binding. `runtime::attention_choice::policy` picks one per adapter; dropout always takes the
/// composed path.
#[derive(Clone, Debug, Default)]
pub enum AttentionPolicy {
    /// The fused op wherever its head dim has a kernel.
    #[default]
    Fused,
    /// The composed path where the scores (B, H, Tq, Tk) take at most `max_score_bytes`, the
    /// fused op elsewhere.
    Composed { max_score_bytes: u64 },
    /// Per call, as the chooser says (measured per shape class on the adapter).
    Chosen(std::sync::Arc<dyn AttentionChooser>),
}

/// Decides per attention call between the fused op and the composed path
/// (`runtime::attention_choice` has the measured one). Only asked where the fused op has a
/// kernel for the call.
pub trait AttentionChooser: Send + Sync + std::fmt::Debug {
    /// Whether the call of shape `s` (`masked`: with key lengths) takes the fused op.
    fn fused(&self, s: &AttentionShape, masked: bool) -> bool;
}

impl AttentionPolicy {
    /// Whether the attention call of shape `s` (`masked`: with key lengths) takes the fused op.
    pub fn fused(&self, s: &AttentionShape, masked: bool) -> bool {
        if !ATTENTION_HEAD_DIMS.contains(&s.head_dim) {
            return false;
        }
        match self {
            AttentionPolicy::Fused => true,
            AttentionPolicy::Composed { max_score_bytes } => s.score_bytes() > *max_score_bytes,
            AttentionPolicy::Chosen(chooser) => chooser.fused(s, masked),
        }
    }

    /// The policy's kind in one word: "fused", "composed" or "chosen".
    pub fn kind(&self) -> &'static str {
        match self {
            AttentionPolicy::Fused => "fused",
            AttentionPolicy::Composed { .. } => "composed",
            AttentionPolicy::Chosen(_) => "chosen",
        }
    }
}

/// The precision a graph's products run in. `F16` is mixed precision as PyTorch's autocast
/// does it for matmuls: each product's operands are rounded to f16 copies and multiplied with
/// f32 accumulation (on matrix units where the adapter has them); every tensor of the graph,
/// the parameters and Adam's moments stay f32. Training in f16 scales the loss (see
/// `runtime::loss_scale`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    /// "f32" or "f16" (`--precision`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => {
                Err(Error::InvalidSetting { name: "--precision", value: other.to_string(), expected: "f32 or f16" })
            }
        }
    }

    /// The name [`Precision::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
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
    /// Add `bias[n]` to every row.
    pub bias: bool,
    /// Add the product to what C holds (gradient accumulation).
    pub accumulate: bool,
    /// Add a residual tensor stored like C (a residual connection fused into the product).
    pub residual: bool,
    /// Also write the row sums of op(A) (M values; one batch): a linear layer's bias gradient
    /// fused into its weight gradient, whose op(A) is dY^T.
    pub row_sums: bool,
    /// An activation applied in the store: C keeps the pre-activation and a second tensor
    /// stored like C gets act(C); with `activation_grad`, C is multiplied by act' at a tensor
    /// stored like C (the activation's backward fused into the product of its gradient).
    pub activation: Option<Activation>,
    /// See `activation`.
    pub activation_grad: bool,
    /// A dropout applied in the store, to what the residual is added to, to the activation
    /// written beside C, or to the product before an activation's derivative multiplies it.
    /// C must be packed: dropout keys each element by its index.
    pub dropout: Option<ProductDropout>,
}

impl MatmulShape {
    /// Densely packed operands: every batch entry follows the previous one.
    pub fn packed(batch: usize, m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Self {
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
            residual: false,
            row_sums: false,
            activation: None,
            activation_grad: false,
            dropout: None,
        }
    }

    /// Floating-point operations of the product (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Elements each buffer must hold: (A, B, C).
    pub fn extents(&self) -> (usize, usize, usize) {
        let last = self.batch.saturating_sub(1);
        let (ar, ac) = if self.trans_a { (self.k, self.m) } else { (self.m, self.k) };
        let (br, bc) = if self.trans_b { (self.n, self.k) } else { (self.k, self.n) };
        let a = last * self.stride_a + (ar - 1) * self.lda + ac;
        let b = last * self.stride_b + (br - 1) * self.ldb + bc;
        let c = last * self.stride_c + (self.m - 1) * self.ldc + self.n;
        (a, b, c)
    }

    /// True when B and C can be accessed as vec4: N, K, ldb, ldc and the B and C batch strides
    /// are multiples of 4 (buffers always start at offset 0).
    pub fn vec4_aligned(&self) -> bool {
        [self.n, self.k, self.ldb, self.ldc, self.stride_b, self.stride_c].iter().all(|v| v % 4 == 0)
    }

    /// Refuses empty products and leading dimensions shorter than the rows they step over.
    pub fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape("matmul", msg));
        if self.batch == 0 || self.m == 0 || self.n == 0 || self.k == 0 {
            return bad(format!("empty product: batch {} M {} N {} K {}", self.batch, self.m, self.n, self.k));
        }
        let (a_cols, b_cols) = (if self.trans_a { self.m } else { self.k }, if self.trans_b { self.k } else { self.n });
        if self.lda < a_cols || self.ldb < b_cols || self.ldc < self.n {
            return bad(format!(
                "leading dimensions lda {} ldb {} ldc {} below the rows' lengths {a_cols}, {b_cols}, {}",
                self.lda, self.ldb, self.ldc, self.n
            ));
        }
        Ok(())
    }
}

/// An activation a product applies in its store (`Op::MatMulAct`, `Op::MatMulActGrad`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Gelu(GeluKind),
    Relu,
    Silu,
}

impl Activation {
    /// The kernels' code of the activation (matmul_extras.wgsl, flags bits 4-6).
    pub fn code(self) -> u32 {
        match self {
            Activation::Gelu(GeluKind::Exact) => 1,
            Activation::Gelu(GeluKind::Tanh) => 2,
            Activation::Relu => 3,
            Activation::Silu => 4,
        }
    }
}

/// A dropout a product applies in its store: the Dropout op's probability and salt (the
/// probability kept as bits, so that shapes and ops stay comparable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProductDropout {
    p_bits: u32,
    /// The Dropout node's salt: which mask of the step it draws.
    pub salt: u32,
}

impl ProductDropout {
    pub const fn new(p: f32, salt: u32) -> Self {
        ProductDropout { p_bits: p.to_bits(), salt }
    }

    /// The probability of dropping an element.
    pub fn p(self) -> f32 {
        f32::from_bits(self.p_bits)
    }
}

/// Which GELU formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluKind {
    /// x/2 (1 + erf(x/sqrt 2)), as in BERT and ViT.
    Exact,
    /// x/2 (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))), as in GPT-2.
    Tanh,
}

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub tq: usize,
    pub tk: usize,
    pub head_dim: usize,
    pub causal: bool,
}

impl AttentionShape {
    /// Keys visible to query i of batch entry b: 0..end.
    pub fn key_end(&self, b: usize, i: usize, key_lens: Option<&[u32]>) -> usize {
        let len = key_lens.map_or(self.tk, |l| (l[b] as usize).min(self.tk));
        if self.causal {
            len.min(i + (self.tk - self.tq) + 1)
        } else {
            len
        }
    }

    /// Offset of (b, t, h) in a (B, tokens, H, D) tensor.
    pub fn at(&self, b: usize, t: usize, h: usize, tokens: usize) -> usize {
        ((b * tokens + t) * self.heads + h) * self.head_dim
    }

    /// The score scale 1/sqrt(D).
    pub fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// Bytes of the (B, H, Tq, Tk) f32 scores the composed path materialises.
    pub fn score_bytes(&self) -> u64 {
        (self.batch as u64)
            .saturating_mul((self.heads * self.tq) as u64)
            .saturating_mul(self.tk as u64)
            .saturating_mul(4)
    }
}

/// Hyper-parameters of one Adam step. `step` counts from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub step: u32,
}

/// (threshold, scale) for drop probability `p`: drop when hash < p * 2^32.
pub fn dropout_constants(p: f32) -> Result<(u32, f32)> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::shape("dropout", format!("probability {p} must be in [0, 1)")));
    }
    Ok((((p as f64) * 4_294_967_296.0).min(u32::MAX as f64) as u32, 1.0 / (1.0 - p)))
}
