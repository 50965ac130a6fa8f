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

var<workgroup> a_strip: array<f32, 1024>;   // [k][m], BK * BM
var<workgroup> b_strip: array<f32, 1024>;   // [k][n], BK * BN

#include "common/matmul_load.wgsl"

@compute @workgroup_size(16, 16, 1)
fn matmul_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) tid: u32) {
    let row0 = wg.x * BM;
    let col0 = wg.y * BN;
    let ab = wg.z * p.stride_a;
    let bb = wg.z * p.stride_b;
    var acc: array<array<f32, 4>, 4>;
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
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_strip[kk * BM + lid.y + 16u * i];
                bv[i] = b_strip[kk * BN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    let cb = wg.z * p.stride_c;
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (row < p.m && col < p.n) {
                let idx = cb + row * p.ldc + col;
                var v = acc[i][j];
                if ((p.flags & 1u) != 0u) { v += bias[col]; }
                if ((p.flags & 2u) != 0u) { v += f32(c[idx]); }
                c[idx] = OutT(v);
            }
        }
    }
}
