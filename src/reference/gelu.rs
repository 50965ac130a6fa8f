//! Reference GELU, exact (erf from libm) and tanh-approximated.

use super::Real;
use crate::graph::GeluKind;

const TANH_COEF: f64 = 0.044715;

fn sqrt_2_over_pi<T: Real>() -> T {
    T::of((2.0 / std::f64::consts::PI).sqrt())
}

pub fn gelu<T: Real>(x: T, kind: GeluKind) -> T {
    let half = T::of(0.5);
    match kind {
        GeluKind::Exact => half * x * (T::of(1.0) + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf()),
        GeluKind::Tanh => half * x * (T::of(1.0) + (sqrt_2_over_pi::<T>() * (x + T::of(TANH_COEF) * x * x * x)).tanh()),
    }
}

pub fn gelu_grad<T: Real>(x: T, kind: GeluKind) -> T {
    let (half, one) = (T::of(0.5), T::of(1.0));
    match kind {
        GeluKind::Exact => {
            let pdf = (-half * x * x).exp() * T::of(1.0 / (2.0 * std::f64::consts::PI).sqrt());
            half * (one + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf()) + x * pdf
        }
        GeluKind::Tanh => {
            let th = (sqrt_2_over_pi::<T>() * (x + T::of(TANH_COEF) * x * x * x)).tanh();
            let du = sqrt_2_over_pi::<T>() * (one + T::of(3.0 * TANH_COEF) * x * x);
            half * (one + th) + half * x * (one - th * th) * du
        }
    }
}

pub fn gelu_forward<T: Real>(out: &mut [T], inp: &[T], kind: GeluKind) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = gelu(x, kind);
    }
}

pub fn gelu_backward<T: Real>(dinp: &mut [T], inp: &[T], dout: &[T], kind: GeluKind) {
    for i in 0..dinp.len() {
        dinp[i] = dout[i] * gelu_grad(inp[i], kind);
    }
}
