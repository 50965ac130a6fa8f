// What a matmul kernel fuses besides bias and accumulation, the same in every matmul kernel
// (the including file declares a, p and TRANS_A, and calls these):
// - flags bit 2: a residual R, stored like C, added to the result (C = R + op(A) op(B) + bias,
//   C a new tensor: a residual connection's Add fused into the product that feeds it);
// - flags bit 3: the row sums of op(A) written to `aux` by one extra column of workgroups (a
//   linear layer's weight gradient dY^T X, whose row sums are its bias gradient). One batch;
// - flags bits 4-6: an activation (1 GELU, 2 GELU tanh, 3 ReLU, 4 SiLU). Without bit 7 C keeps
//   the pre-activation (what the activation's backward reads) and `aux`, stored like C, gets
//   act(C); with bit 7 C = (op(A) op(B) + bias) act'(P), P stored like C in `side` (an
//   activation's backward fused into the product that makes its incoming gradient);
// - flags bit 8: a dropout (common/dropout_hash.wgsl, keyed by C's packed index and the step's
//   seed at binding 8) of what the residual is added to, of act(C) written to aux, or of the
//   product before act' multiplies it; alone, of C.
// side's and aux's storage: f16 in the f16 products' forms where mixed precision keeps the
// residual, the pre-activation or the activation in half precision (shaders::with_f16); f32 in
// every other kernel, and for row sums always.
alias SideT = f32;
alias AuxT = f32;
@group(0) @binding(4) var<storage, read> side: array<SideT>;        // R or P, (batch, M, N) as C
@group(0) @binding(5) var<storage, read_write> aux: array<AuxT>;    // row sums (M), or act(C) as C

@group(0) @binding(8) var<uniform> st: StepParams;

#include "common/activations.wgsl"
#include "common/dropout_hash.wgsl"

// False in the pipelines of products that fuse nothing, where the CPU kernels (matmul.wgsl,
// matmul_sg.wgsl) then compile without the row sums' branch and the epilogue's pass: llvmpipe
// ran their plain products slower with that code present even where it did not run.
override EXTRAS: bool = true;

const ADD_RESIDUAL: u32 = 4u;
const ROW_SUMS: u32 = 8u;
const ACT_GRAD: u32 = 128u;
const DROPOUT: u32 = 256u;

// The activation the flags ask for: 0 none.
fn activation() -> u32 {
    return (p.flags >> 4u) & 7u;
}

// Whether the flags ask for an epilogue at C's elements (a residual or an activation).
fn has_epilogue() -> bool {
    return EXTRAS && (p.flags & ~11u) != 0u;
}

// Whether the epilogue reads `side` at C's elements.
fn reads_side() -> bool {
    return (p.flags & ADD_RESIDUAL) != 0u || (activation() != 0u && (p.flags & ACT_GRAD) != 0u);
}

fn act_fwd(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return gelu(x, 0u); }
        case 2u: { return gelu(x, 1u); }
        case 3u: { return max(x, 0.0); }
        default: { return x * sigmoid(x); }
    }
}

fn act_grad(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return gelu_grad(x, 0u); }
        case 2u: { return gelu_grad(x, 1u); }
        case 3u: { return select(0.0, 1.0, x > 0.0); }
        default: { return silu_grad(x); }
    }
}

// x dropped at C's element `idx` where the flags ask (as dropout.wgsl would: on a data-parallel
// rank the index counts from shard x the elements of C).
fn dropped(idx: u32, x: f32) -> f32 {
    if ((p.flags & DROPOUT) == 0u) {
        return x;
    }
    let index = idx + st.shard * (p.batch * p.m * p.n);
    return select(0.0, x * p.drop_scale, dropout_keep(st.seed, p.drop_salt, index, p.drop_threshold));
}

// What C's element `idx` becomes from x (the product with bias and accumulation) and s (side's
// element there, where reads_side()): the residual added, or the activation's derivative
// applied, or the activation written to aux; with the dropout before each.
fn epilogue(idx: u32, x: f32, s: f32) -> f32 {
    if ((p.flags & ADD_RESIDUAL) != 0u) {
        return s + dropped(idx, x);
    }
    let act = activation();
    if (act == 0u) {
        return dropped(idx, x);
    }
    if ((p.flags & ACT_GRAD) != 0u) {
        return dropped(idx, x) * act_grad(s, act);
    }
    aux[idx] = AuxT(dropped(idx, act_fwd(x, act)));
    return x;
}

// epilogue() where side is read as scalars.
fn finish(idx: u32, x: f32) -> f32 {
    if (!has_epilogue()) { return x; }
    var s = 0.0;
    if (reads_side()) { s = f32(side[idx]); }
    return epilogue(idx, x, s);
}

// Whether this workgroup is the extra column that writes the row sums: the grid then has one
// more column of workgroups than C needs. Uniform across the workgroup (so kernels with
// barriers may return early on it).
fn is_row_sums_group(wg: vec3<u32>, groups: vec3<u32>) -> bool {
    return EXTRAS && (p.flags & ROW_SUMS) != 0u && wg.y == groups.y - 1u && wg.z == 0u;
}

// aux[m] = the sum over k of op(A)[m][k], for the rows m0 + lane, m0 + lane + lanes, .. below
// m_end: each lane walks its rows' k, 8 at a time (llvmpipe's loop budget counts iterations).
fn write_row_sums(m0: u32, m_end: u32, lane: u32, lanes: u32) {
    let k_step = select(1u, p.lda, TRANS_A);
    let row_step = select(p.lda, 1u, TRANS_A);
    let k_full = p.k & ~7u;
    for (var m = m0 + lane; m < min(m_end, p.m); m += lanes) {
        let base = m * row_step;
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        for (var k = 0u; k < k_full; k += 8u) {
            let i = base + k * k_step;
            s0 += vec4<f32>(f32(a[i]), f32(a[i + k_step]), f32(a[i + 2u * k_step]), f32(a[i + 3u * k_step]));
            let j = i + 4u * k_step;
            s1 += vec4<f32>(f32(a[j]), f32(a[j + k_step]), f32(a[j + 2u * k_step]), f32(a[j + 3u * k_step]));
        }
        let s = s0 + s1;
        var total = (s.x + s.y) + (s.z + s.w);
        for (var k = k_full; k < p.k; k++) {
            total += f32(a[base + k * k_step]);
        }
        aux[m] = AuxT(total);
    }
}
