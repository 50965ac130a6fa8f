// Batched matrix multiply of f16 operands, accumulated and written in f32: C = op(A) op(B)
// (+ bias) (+ C), the same params as matmul.wgsl. The fallback of the f16 products where the
// adapter has no matrix units (matmul_coop.wgsl): f16 halves the bytes every operand load
// moves, the arithmetic stays f32. A workgroup of 16 x 16 invocations owns a 64 x 64 block of
// C; for each strip of BK along k it stages the block's rows of A and columns of B in
// workgroup memory (widened to f32, zero outside the matrix), loads that neighbouring lanes
// make at neighbouring addresses whichever way the operand is stored, then every invocation
// does 4 x 4 fused multiply-adds per k. An invocation owns rows ty + 16 i and columns
// tx + 16 j, so the 16 lanes along x read 16 consecutive floats of the B strip.

enable f16;

#include "common/matmul_params.wgsl"

const BM: u32 = 64u;        // rows of C per workgroup
const BN: u32 = 64u;        // columns of C per workgroup
const BK: u32 = 16u;        // k per strip
const LANES: u32 = 256u;    // invocations per workgroup

#include "common/matmul_f16_io.wgsl"
#include "common/matmul_extras.wgsl"

var<workgroup> a_strip: array<f32, 1024>;   // [k][m], BK * BM
var<workgroup> b_strip: array<f32, 1024>;   // [k][n], BK * BN

#include "common/matmul_load.wgsl"

@compute @workgroup_size(16, 16, 1)
fn matmul_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) tid: u32, @builtin(num_workgroups) groups: vec3<u32>) {
    let row0 = wg.x * BM;
    if (is_row_sums_group(wg, groups)) {
        write_row_sums(row0, row0 + BM, tid, LANES);
        return;
    }
    let col0 = wg.y * BN;
    let ab = wg.z * p.stride_a;
    let bb = wg.z * p.stride_b;
    // Row ty + 16 i: acc<i>, its columns tx + 16 j in component j (named, not an array: see
    // matmul_tiled.wgsl).
    var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Each lane stages 4 values of each strip. Consecutive lanes walk the operand's
        // contiguous index: k for A as (M, K), m for A as (K, M); n for B as (K, N), k for B
        // as (N, K).
        for (var e = 0u; e < 4u; e++) {
            let idx = tid + e * LANES;
            let ak = select(idx % BK, idx / BM, TRANS_A);
            let am = select(idx / BK, idx % BM, TRANS_A);
            a_strip[ak * BM + am] = load_a(ab, row0 + am, k0 + ak);
            let bk = select(idx / BN, idx % BK, TRANS_B);
            let bn = select(idx % BN, idx / BK, TRANS_B);
            b_strip[bk * BN + bn] = load_b(bb, k0 + bk, col0 + bn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let ar = kk * BM + lid.y;
            let br = kk * BN + lid.x;
            let bv = vec4<f32>(b_strip[br], b_strip[br + 16u], b_strip[br + 32u], b_strip[br + 48u]);
            acc0 = fma(vec4<f32>(a_strip[ar]), bv, acc0);
            acc1 = fma(vec4<f32>(a_strip[ar + 16u]), bv, acc1);
            acc2 = fma(vec4<f32>(a_strip[ar + 32u]), bv, acc2);
            acc3 = fma(vec4<f32>(a_strip[ar + 48u]), bv, acc3);
        }
        workgroupBarrier();
    }
    let cb = wg.z * p.stride_c;
    store_row(cb, row0 + lid.y, col0 + lid.x, acc0);
    store_row(cb, row0 + lid.y + 16u, col0 + lid.x, acc1);
    store_row(cb, row0 + lid.y + 32u, col0 + lid.x, acc2);
    store_row(cb, row0 + lid.y + 48u, col0 + lid.x, acc3);
}

// Row `row`'s values at columns col + 16 j (component j), within the matrix, with the bias, the
// accumulation and the residual the flags ask for.
fn store_row(cb: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let n = col + 16u * j;
        if (n < p.n) {
            let idx = cb + row * p.ldc + n;
            var x = v[j];
            if ((p.flags & 1u) != 0u) { x += bias[n]; }
            if ((p.flags & 2u) != 0u) { x += f32(c[idx]); }
            c[idx] = OutT(finish(idx, x));
        }
    }
}
