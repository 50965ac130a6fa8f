//! An elementwise chain (`graph::chain`) step by step over whole vectors, with the references of
//! the ops it fused: what the chain's generated kernel must compute.

use super::cast::round_f16_real;
use super::{dropout, elementwise as ew, gelu, Real};
use crate::graph::chain::{Chain, ChainOp};

/// The chain's outputs over `n` elements from its `inputs` (an input shorter than `n` repeats),
/// dropout drawing from the step `seed`.
pub fn chain_outputs<T: Real>(chain: &Chain, inputs: &[&[T]], n: usize, seed: u32) -> Vec<Vec<T>> {
    let mut values: Vec<Vec<T>> = inputs.iter().map(|x| (0..n).map(|i| x[i % x.len()]).collect()).collect();
    for step in &chain.steps {
        let arg = |k: usize| &values[step.args[k]][..];
        let mut y: Vec<T> = match step.op {
            ChainOp::Add => arg(0).iter().zip(arg(1)).map(|(&a, &b)| a + b).collect(),
            ChainOp::Mul => arg(0).iter().zip(arg(1)).map(|(&a, &b)| a * b).collect(),
            ChainOp::Scale(alpha) => arg(0).iter().map(|&a| T::of(alpha as f64) * a).collect(),
            ChainOp::Act(act) => activation_forward(act, arg(0)),
            ChainOp::ActGrad(act) => activation_backward(act, arg(0), arg(1)),
            ChainOp::Dropout(drop) => {
                let (threshold, scale) =
                    crate::graph::params::dropout_constants(drop.p()).expect("checked at build time");
                let mut y = vec![T::of(0.0); n];
                dropout::dropout_forward(&mut y, arg(0), seed, drop.salt, threshold, scale);
                y
            }
            ChainOp::RoundF16 => arg(0).iter().map(|&v| round_f16_real(v)).collect(),
        };
        if step.round {
            y.iter_mut().for_each(|v| *v = round_f16_real(*v));
        }
        values.push(y);
    }
    chain.outputs.iter().map(|&v| values[v].clone()).collect()
}

/// act(x), as the Gelu, Relu and Silu ops compute it.
pub fn activation_forward<T: Real>(act: crate::graph::Activation, x: &[T]) -> Vec<T> {
    use crate::graph::Activation;
    let mut y = vec![T::of(0.0); x.len()];
    match act {
        Activation::Gelu(kind) => gelu::gelu_forward(&mut y, x, kind),
        Activation::Relu => ew::relu_forward(&mut y, x),
        Activation::Silu => ew::silu_forward(&mut y, x),
    }
    y
}

/// dy act'(x), as the GeluBwd, ReluBwd and SiluBwd ops compute it.
pub fn activation_backward<T: Real>(act: crate::graph::Activation, x: &[T], dy: &[T]) -> Vec<T> {
    use crate::graph::Activation;
    let mut dx = vec![T::of(0.0); x.len()];
    match act {
        Activation::Gelu(kind) => gelu::gelu_backward(&mut dx, x, dy, kind),
        Activation::Relu => ew::relu_backward(&mut dx, x, dy),
        Activation::Silu => ew::silu_backward(&mut dx, x, dy),
    }
    dx
}
