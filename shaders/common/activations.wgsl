// Activation functions and their derivatives, shared by gelu.wgsl, elementwise.wgsl and the
// matmul's fused activations (matmul_extras.wgsl).
// WGSL has no erf. erf_approx: |x| < 0.5 uses the Maclaurin series to x^11 (truncation below
// 1e-9); elsewhere Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7). In f32 the GELU
// built on it stays within 3e-7 absolute of the exact value (measured by the kernel tests).

const SQRT_HALF: f32 = 0.70710678118654752;
const INV_SQRT_2PI: f32 = 0.39894228040143268;
const SQRT_2_OVER_PI: f32 = 0.79788456080286536;
const TANH_COEF: f32 = 0.044715;

fn erf_approx(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.5) {
        // 2/sqrt(pi) * (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320)
        let x2 = x * x;
        let s = 1.0 + x2 * (-1.0 / 3.0 + x2 * (1.0 / 10.0 + x2 * (-1.0 / 42.0 + x2 * (1.0 / 216.0 - x2 / 1320.0))));
        return 1.1283791670955126 * x * s;
    }
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-ax * ax);
    return select(y, -y, x < 0.0);
}

// tanh with its argument clamped: some backends build tanh from exp and overflow to NaN.
fn tanh_safe(u: f32) -> f32 {
    return tanh(clamp(u, -15.0, 15.0));
}

fn gelu(x: f32, approximate: u32) -> f32 {
    if (approximate == 1u) {
        return 0.5 * x * (1.0 + tanh_safe(SQRT_2_OVER_PI * (x + TANH_COEF * x * x * x)));
    }
    return 0.5 * x * (1.0 + erf_approx(x * SQRT_HALF));
}

fn gelu_grad(x: f32, approximate: u32) -> f32 {
    if (approximate == 1u) {
        let th = tanh_safe(SQRT_2_OVER_PI * (x + TANH_COEF * x * x * x));
        let du = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_COEF * x * x);
        return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
    }
    return 0.5 * (1.0 + erf_approx(x * SQRT_HALF)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

// 1 / (1 + e^-x): 0 for very negative x (e^-x overflows to inf), 1 for very positive x.
fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// d/dx x sigmoid(x) = s (1 + x (1 - s)), s = sigmoid(x).
fn silu_grad(x: f32) -> f32 {
    let s = sigmoid(x);
    return s * (1.0 + x * (1.0 - s));
}
