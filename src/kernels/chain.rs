//! Elementwise chains (`graph::chain`): one kernel per chain's form, generated from
//! `shaders/elementwise_chain.wgsl`. A form is the chain's steps and wiring, its tensors' types
//! and which inputs repeat; the constants (scales, dropouts' salts) live in the uniform, so
//! chains that differ only in them share a pipeline. Pipelines are compiled on first use and
//! kept per form.

use super::{check_f32_or_f16, dispatch_with_uniforms, grid, u32_of, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Held, Tensor};
use crate::graph::chain::{Chain, ChainOp};
use crate::graph::{Activation, GeluKind};
use std::fmt::Write;
use std::sync::Mutex;

const WG: u32 = 256;
const FILE: &str = "elementwise_chain.wgsl";
/// u32 and f32 constants the uniform holds (`words`, `reals`).
const CONSTANTS: usize = 32;

/// Mirrors `ChainParams` in elementwise_chain.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ChainParams {
    n: u32,
    _pad: [u32; 3],
    lens: [u32; 8],
    words: [u32; CONSTANTS],
    reals: [f32; CONSTANTS],
}

/// A chain's WGSL and the constants its uniform carries.
pub struct ChainForm {
    pub source: String,
    words: Vec<u32>,
    reals: Vec<f32>,
    /// Whether a step draws dropout (the step uniform is bound).
    dropout: bool,
}

/// The chain kernels: pipelines per form, compiled on first use.
#[derive(Default)]
pub struct ChainKernels {
    /// Held: kernels built apart from the device's may drop on any thread, and on GL dropping
    /// a pipeline needs the context.
    pipelines: Mutex<Vec<(String, Held<wgpu::ComputePipeline>)>>,
}

/// The WGSL expression `p.NAME[k / 4].xyzw` of constant `k`.
fn constant(name: &str, k: usize) -> String {
    format!("p.{name}[{}].{}", k / 4, ["x", "y", "z", "w"][k % 4])
}

/// The expression of one step over the values `a` (and `b`), and its constants.
fn step_expression(op: ChainOp, a: &str, b: &str, words: &mut Vec<u32>, reals: &mut Vec<f32>) -> Result<String> {
    let gelu_code = |kind: GeluKind| if kind == GeluKind::Tanh { "1u" } else { "0u" };
    Ok(match op {
        ChainOp::Add => format!("{a} + {b}"),
        ChainOp::Mul => format!("{a} * {b}"),
        ChainOp::Scale(alpha) => {
            reals.push(alpha);
            format!("{} * {a}", constant("reals", reals.len() - 1))
        }
        ChainOp::Act(Activation::Gelu(kind)) => format!("gelu({a}, {})", gelu_code(kind)),
        ChainOp::Act(Activation::Relu) => format!("max({a}, 0.0)"),
        ChainOp::Act(Activation::Silu) => format!("{a} * sigmoid({a})"),
        ChainOp::ActGrad(Activation::Gelu(kind)) => format!("{b} * gelu_grad({a}, {})", gelu_code(kind)),
        ChainOp::ActGrad(Activation::Relu) => format!("select(0.0, {b}, {a} > 0.0)"),
        ChainOp::ActGrad(Activation::Silu) => format!("{b} * silu_grad({a})"),
        ChainOp::Dropout(drop) => {
            let (threshold, scale) = crate::graph::params::dropout_constants(drop.p())?;
            words.extend([drop.salt, threshold]);
            reals.push(scale);
            let (w, r) = (words.len() - 2, reals.len() - 1);
            let (salt, threshold, scale) = (constant("words", w), constant("words", w + 1), constant("reals", r));
            format!("dropped(i, {a}, {salt}, {threshold}, {scale})")
        }
        ChainOp::RoundF16 => format!("f32(f16({a}))"),
    })
}

/// The WGSL type of a tensor's elements.
fn storage_type(t: DType) -> &'static str {
    if t == DType::F16 {
        "f16"
    } else {
        "f32"
    }
}

/// The form of `chain` over tensors of these types, `repeats[k]` where input k is shorter than
/// n. An error where the chain is malformed or its constants overflow the uniform.
pub fn chain_form(chain: &Chain, inputs: &[DType], repeats: &[bool], outputs: &[DType]) -> Result<ChainForm> {
    chain.check(outputs.len()).map_err(|message| Error::shape("elementwise_chain", message))?;
    if inputs.len() != chain.inputs || repeats.len() != chain.inputs {
        return Err(Error::shape("elementwise_chain", format!("{} inputs typed for {}", inputs.len(), chain.inputs)));
    }
    let tensors = inputs.len() + outputs.len();
    let mut bindings = String::new();
    for (k, t) in inputs.iter().enumerate() {
        let ty = storage_type(*t);
        writeln!(bindings, "@group(0) @binding({k}) var<storage, read> in{k}: array<{ty}>;").unwrap();
    }
    for (k, t) in outputs.iter().enumerate() {
        let (b, ty) = (inputs.len() + k, storage_type(*t));
        writeln!(bindings, "@group(0) @binding({b}) var<storage, read_write> out{k}: array<{ty}>;").unwrap();
    }
    writeln!(bindings, "@group(0) @binding({tensors}) var<uniform> p: ChainParams;").unwrap();
    writeln!(bindings, "@group(0) @binding({}) var<uniform> st: StepParams;", tensors + 1).unwrap();
    let mut body = String::new();
    for (k, &repeat) in repeats.iter().enumerate() {
        let index = if repeat { format!("i % {}", constant("lens", k)) } else { "i".into() };
        writeln!(body, "    let v{k} = f32(in{k}[{index}]);").unwrap();
    }
    let (mut words, mut reals) = (Vec::new(), Vec::new());
    for (k, step) in chain.steps.iter().enumerate() {
        let arg = |j: usize| step.args.get(j).map(|v| format!("v{v}")).unwrap_or_default();
        let mut e = step_expression(step.op, &arg(0), &arg(1), &mut words, &mut reals)?;
        if step.round {
            e = format!("f32(f16({e}))");
        }
        writeln!(body, "    let v{} = {e};", chain.inputs + k).unwrap();
    }
    for (k, (&v, t)) in chain.outputs.iter().zip(outputs).enumerate() {
        writeln!(body, "    out{k}[i] = {}(v{v});", storage_type(*t)).unwrap();
    }
    if words.len() > CONSTANTS || reals.len() > CONSTANTS {
        return Err(Error::shape("elementwise_chain", "more constants than the uniform holds"));
    }
    let halves = inputs.iter().chain(outputs).any(|&t| t == DType::F16);
    let rounds = chain.steps.iter().any(|s| s.round || s.op == ChainOp::RoundF16);
    let source = generate(&bindings, &body, halves || rounds)?;
    let dropout = chain.steps.iter().any(|s| matches!(s.op, ChainOp::Dropout(_)));
    Ok(ChainForm { source, words, reals, dropout })
}

/// The template with its marked regions replaced, `enable f16;` first where `f16` says.
fn generate(bindings: &str, body: &str, f16: bool) -> Result<String> {
    let template = crate::shaders::ELEMENTWISE_CHAIN;
    let replace = |text: &str, marker: &str, with: &str| -> Result<String> {
        let start =
            text.find(marker).ok_or_else(|| Error::Shader { file: FILE.into(), message: format!("no {marker}") })?;
        let end = text[start..].find("//@end\n").map(|e| start + e + "//@end\n".len());
        let end =
            end.ok_or_else(|| Error::Shader { file: FILE.into(), message: format!("{marker} without //@end") })?;
        Ok(format!("{}{with}{}", &text[..start], &text[end..]))
    };
    let text = replace(template, "//@bindings\n", bindings)?;
    let text = replace(&text, "//@body\n", body)?;
    Ok(if f16 { format!("enable f16;\n{text}") } else { text })
}

impl ChainKernels {
    /// The dispatch of `chain` over `n` elements: `inputs` with their element counts (n, or a
    /// divisor of n for an input that repeats), `outputs` of n elements each, each f32 or f16;
    /// `step` the step uniform dropout draws from.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        chain: &Chain,
        inputs: &[(&Tensor, usize)],
        outputs: &[&Tensor],
        n: usize,
        step: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let op = "elementwise_chain";
        for (k, &(t, len)) in inputs.iter().enumerate() {
            check_f32_or_f16(op, &format!("input {k}"), t, len)?;
            if len == 0 || !n.is_multiple_of(len) {
                return Err(Error::shape(op, format!("input {k} has {len} elements, not a divisor of {n}")));
            }
        }
        for (k, t) in outputs.iter().enumerate() {
            check_f32_or_f16(op, &format!("output {k}"), t, n)?;
        }
        let types: Vec<DType> = inputs.iter().map(|(t, _)| t.dtype).collect();
        let repeats: Vec<bool> = inputs.iter().map(|&(_, len)| len != n).collect();
        let out_types: Vec<DType> = outputs.iter().map(|t| t.dtype).collect();
        let form = chain_form(chain, &types, &repeats, &out_types)?;
        let pipeline = self.pipeline(gpu, &form.source)?;
        let params = gpu.uniform(op, &form.params(n, inputs)?);
        let tensors: Vec<&Tensor> = inputs.iter().map(|(t, _)| *t).chain(outputs.iter().copied()).collect();
        let uniforms: Vec<&wgpu::Buffer> = if form.dropout { vec![&params, step] } else { vec![&params] };
        let groups = grid(gpu, op, (n as u64).div_ceil(WG as u64))?;
        dispatch_with_uniforms(gpu, op, &pipeline, &tensors, &uniforms, groups)
    }

    /// The pipeline of a form's source, compiled on first use.
    fn pipeline(&self, gpu: &Gpu, source: &str) -> Result<wgpu::ComputePipeline> {
        // Held while compiling, so that two threads never build the same form twice.
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = cache.iter().find(|(s, _)| s == source) {
            return Ok((**p).clone());
        }
        if source.starts_with("enable f16;") && !gpu.caps.f16 {
            return Err(Error::Unsupported { what: "f16 storage (SHADER_F16)", adapter: gpu.describe() });
        }
        let module = gpu.shader(FILE, source)?;
        let p = gpu.pipeline(&module, "chain", &[("WG", WG as f64)])?;
        cache.push((source.to_string(), gpu.hold(p.clone())));
        Ok(p)
    }

    /// Forms compiled so far (tests, reports).
    pub fn forms(&self) -> usize {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl ChainForm {
    /// The uniform of a dispatch over `n` elements.
    fn params(&self, n: usize, inputs: &[(&Tensor, usize)]) -> Result<ChainParams> {
        let op = "elementwise_chain";
        let mut p = ChainParams {
            n: u32_of(op, "n", n)?,
            _pad: [0; 3],
            lens: [1; 8],
            words: [0; CONSTANTS],
            reals: [0.0; CONSTANTS],
        };
        for (k, &(_, len)) in inputs.iter().enumerate() {
            p.lens[k] = u32_of(op, "input length", len)?;
        }
        p.words[..self.words.len()].copy_from_slice(&self.words);
        p.reals[..self.reals.len()].copy_from_slice(&self.reals);
        Ok(p)
    }
}
