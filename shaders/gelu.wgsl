// GELU, forward and backward, elementwise over n values.
//   exact (approximate == 0): gelu(x) = x/2 * (1 + erf(x / sqrt(2)))
//   tanh  (approximate == 1): gelu(x) = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//   gelu_bwd: dinp = dout * gelu'(x)
// WGSL has no erf. erf_approx: |x| < 0.5 uses the Maclaurin series to x^11 (truncation below
// 1e-9); elsewhere Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7). In f32 the GELU
// built on it stays within 3e-7 absolute of the exact value (measured by the kernel tests).

struct GeluParams { n: u32, approximate: u32, _pad0: u32, _pad1: u32, }

// Storage types, each f16 in the forms where mixed precision keeps that tensor in half
// precision (shaders::with_f16): InT the input x, OutT the output (gelu_fwd's y, gelu_bwd's
// dx), DyT gelu_bwd's dy. Arithmetic stays f32.
alias InT = f32;
alias OutT = f32;
alias DyT = f32;

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<OutT>;
@group(0) @binding(1) var<storage, read> inp: array<InT>;
@group(0) @binding(2) var<uniform> p: GeluParams;

// gelu_bwd's bindings: dinp is the output, then inp and dout.
@group(0) @binding(0) var<storage, read_write> bw_dinp: array<OutT>;
@group(0) @binding(1) var<storage, read> bw_inp: array<InT>;
@group(0) @binding(2) var<storage, read> bw_dout: array<DyT>;
@group(0) @binding(3) var<uniform> bw_p: GeluParams;

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

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn gelu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) { out[i] = OutT(gelu(f32(inp[i]), p.approximate)); }
}

@compute @workgroup_size(WG)
fn gelu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < bw_p.n) { bw_dinp[i] = OutT(f32(bw_dout[i]) * gelu_grad(f32(bw_inp[i]), bw_p.approximate)); }
}
