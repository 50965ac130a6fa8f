//! Elementwise chains: several elementwise ops over tensors of one element count, run as one
//! kernel that keeps the values between them in registers. Made by the chain fusion
//! (`fuse/chains.rs`) from the elementwise nodes no other fusion took; the kernel is generated
//! from the chain (`kernels/chain.rs`) and the reference interprets it (`reference/chain.rs`).
//!
//! Values are numbered: `0..inputs` are the node's inputs, then one value per step. Every value
//! holds n elements; an input with fewer (a broadcast Add's addend) repeats over the leading
//! dimensions, element i reading element `i % len`.

use super::{Activation, Op, ProductDropout};

/// The most steps, inputs plus outputs, and constants one chain may have: the kernel binds
/// each tensor (WebGPU's default allows 8 storage buffers per stage) and its uniform holds
/// the constants.
pub const MAX_STEPS: usize = 16;
pub const MAX_TENSORS: usize = 8;

/// One elementwise operation of a chain, on f32 values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChainOp {
    /// `[a, b] -> a + b`
    Add,
    /// `[a, b] -> a b`
    Mul,
    /// `[a] -> alpha a`
    Scale(f32),
    /// `[x] -> act(x)`
    Act(Activation),
    /// `[x, dy] -> dy act'(x)`
    ActGrad(Activation),
    /// `[x]` -> inverted dropout of x (its backward is the same draw on dy)
    Dropout(ProductDropout),
    /// `[x]` -> x rounded to the nearest f16 value (a CastF16)
    RoundF16,
}

impl ChainOp {
    /// How many values the op reads.
    pub fn arity(self) -> usize {
        match self {
            ChainOp::Add | ChainOp::Mul | ChainOp::ActGrad(_) => 2,
            _ => 1,
        }
    }
}

/// One step: `op` on the values `args`, making the next value; `round` where the graph kept
/// that value in f16 (so that the chain computes what the unfused ops stored).
#[derive(Clone, Debug, PartialEq)]
pub struct ChainStep {
    pub op: ChainOp,
    pub args: Vec<usize>,
    pub round: bool,
}

/// A chain: its steps in order, and the values its node writes, one per output.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Chain {
    pub inputs: usize,
    pub steps: Vec<ChainStep>,
    pub outputs: Vec<usize>,
}

/// An op as chain steps: each step's op and arguments (positions among the op's inputs), and
/// the step that makes each of its outputs.
pub type OpSteps = (Vec<(ChainOp, Vec<usize>)>, Vec<usize>);

/// The steps that compute `op`'s outputs from its inputs; `None` for ops that are not
/// elementwise.
pub fn steps_of(op: &Op) -> Option<OpSteps> {
    let one = |op: ChainOp, args: Vec<usize>| Some((vec![(op, args)], vec![0]));
    match *op {
        Op::Add => one(ChainOp::Add, vec![0, 1]),
        Op::Mul => one(ChainOp::Mul, vec![0, 1]),
        // [a, b, dout] -> [dout b, dout a]
        Op::MulBwd => Some((vec![(ChainOp::Mul, vec![2, 1]), (ChainOp::Mul, vec![2, 0])], vec![0, 1])),
        Op::Scale { alpha } => one(ChainOp::Scale(alpha), vec![0]),
        Op::Gelu { kind } => one(ChainOp::Act(Activation::Gelu(kind)), vec![0]),
        Op::Relu => one(ChainOp::Act(Activation::Relu), vec![0]),
        Op::Silu => one(ChainOp::Act(Activation::Silu), vec![0]),
        Op::GeluBwd { kind } => one(ChainOp::ActGrad(Activation::Gelu(kind)), vec![0, 1]),
        Op::ReluBwd => one(ChainOp::ActGrad(Activation::Relu), vec![0, 1]),
        Op::SiluBwd => one(ChainOp::ActGrad(Activation::Silu), vec![0, 1]),
        Op::Dropout { p, salt } | Op::DropoutBwd { p, salt } => {
            one(ChainOp::Dropout(ProductDropout::new(p, salt)), vec![0])
        }
        Op::CastF16 => one(ChainOp::RoundF16, vec![0]),
        _ => None,
    }
}

impl Chain {
    /// The number of values: inputs, then one per step.
    pub fn values(&self) -> usize {
        self.inputs + self.steps.len()
    }

    /// An error message where the chain is malformed: a step reading a value not yet made or
    /// with the wrong number of arguments, an output that is no value, or past the limits.
    pub fn check(&self, outputs: usize) -> Result<(), String> {
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(format!("{} steps (1 to {MAX_STEPS})", self.steps.len()));
        }
        if self.inputs + outputs > MAX_TENSORS || outputs != self.outputs.len() {
            return Err(format!("{} inputs and {} outputs (at most {MAX_TENSORS} tensors)", self.inputs, outputs));
        }
        for (k, step) in self.steps.iter().enumerate() {
            if step.args.len() != step.op.arity() || step.args.iter().any(|&a| a >= self.inputs + k) {
                return Err(format!("step {k} ({:?}) reads {:?}", step.op, step.args));
            }
        }
        match self.outputs.iter().find(|&&v| v >= self.values()) {
            Some(v) => Err(format!("output value {v} of {}", self.values())),
            None => Ok(()),
        }
    }
}
