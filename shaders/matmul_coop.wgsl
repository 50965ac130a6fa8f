// Batched matrix multiply of f16 operands on matrix units (tensor cores, simdgroup matrices,
// WMMA) through cooperative matrices: C = op(A) op(B) (+ bias) (+ C) in f32, the same params
// as matmul.wgsl. Needs a device with EXPERIMENTAL_COOPERATIVE_MATRIX and a 16x16x16
// configuration of f16 inputs accumulating in f32 (kernels/matmul_f16.rs checks both).
// One subgroup per workgroup (SG lanes: the adapter's fixed subgroup size) owns a 32 x 32
// block of C as 2 x 2 accumulator tiles. For each strip of 16 along k, the lanes stage the
// block's rows of op(A) and columns of op(B) in workgroup memory, row-major and zero outside
// the matrix (so any shape and either layout work), and the subgroup multiplies the 2 x 2
// tiles. The accumulators go out through workgroup memory, where bias, accumulation and the
// matrix edges are applied per element.

enable f16;
enable wgpu_cooperative_matrix;

#include "common/matmul_params.wgsl"
override SG: u32 = 32u;     // lanes per workgroup: one subgroup

const BM: u32 = 32u;        // rows of C per workgroup
const BN: u32 = 32u;        // columns of C per workgroup
const BK: u32 = 16u;        // k per strip

#include "common/matmul_f16_io.wgsl"
#include "common/matmul_extras.wgsl"

var<workgroup> a_tile: array<f16, 512>;    // op(A) strip as [m][k], BM * BK
var<workgroup> b_tile: array<f16, 512>;    // op(B) strip as [k][n], BK * BN
var<workgroup> c_tile: array<f32, 1024>;   // the block of C as [m][n], BM * BN

// op(A)[m][k] of batch offset `ab`, 0 outside the matrix.
fn load_a(ab: u32, m: u32, k: u32) -> f16 {
    var v = f16(0.0);
    if (m < p.m && k < p.k) {
        v = a[ab + select(m * p.lda + k, k * p.lda + m, TRANS_A)];
    }
    return v;
}

// op(B)[k][n] of batch offset `bb`, 0 outside the matrix.
fn load_b(bb: u32, k: u32, n: u32) -> f16 {
    var v = f16(0.0);
    if (k < p.k && n < p.n) {
        v = b[bb + select(k * p.ldb + n, n * p.ldb + k, TRANS_B)];
    }
    return v;
}

@compute @workgroup_size(SG, 1, 1)
fn matmul_coop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
               @builtin(num_workgroups) groups: vec3<u32>) {
    let row0 = wg.x * BM;
    let col0 = wg.y * BN;
    let ab = wg.z * p.stride_a;
    let bb = wg.z * p.stride_b;
    // Zeroed accumulators, loaded from zeroed workgroup memory.
    for (var e = lane; e < BM * BN; e += SG) {
        c_tile[e] = 0.0;
    }
    workgroupBarrier();
    var c00 = coopLoadT<coop_mat16x16<f32, C>>(&c_tile[0], BN);
    var c01 = coopLoadT<coop_mat16x16<f32, C>>(&c_tile[16], BN);
    var c10 = coopLoadT<coop_mat16x16<f32, C>>(&c_tile[16u * BN], BN);
    var c11 = coopLoadT<coop_mat16x16<f32, C>>(&c_tile[16u * BN + 16u], BN);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // The previous strip's tiles are read before they are overwritten.
        workgroupBarrier();
        // Consecutive lanes walk each operand's contiguous index (see matmul_f16.wgsl).
        for (var e = lane; e < BM * BK; e += SG) {
            let am = select(e / BK, e % BM, TRANS_A);
            let ak = select(e % BK, e / BM, TRANS_A);
            a_tile[am * BK + ak] = load_a(ab, row0 + am, k0 + ak);
            let bk = select(e / BN, e % BK, TRANS_B);
            let bn = select(e % BN, e / BK, TRANS_B);
            b_tile[bk * BN + bn] = load_b(bb, k0 + bk, col0 + bn);
        }
        workgroupBarrier();
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_tile[0], BK);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_tile[16u * BK], BK);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_tile[0], BN);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_tile[16], BN);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
    }
    coopStoreT(c00, &c_tile[0], BN);
    coopStoreT(c01, &c_tile[16], BN);
    coopStoreT(c10, &c_tile[16u * BN], BN);
    coopStoreT(c11, &c_tile[16u * BN + 16u], BN);
    workgroupBarrier();
    let cb = wg.z * p.stride_c;
    for (var e = lane; e < BM * BN; e += SG) {
        let row = row0 + e / BN;
        let col = col0 + e % BN;
        if (row < p.m && col < p.n) {
            let idx = cb + row * p.ldc + col;
            var v = c_tile[e];
            if ((p.flags & 1u) != 0u) { v += bias[col]; }
            if ((p.flags & 2u) != 0u) { v += f32(c[idx]); }
            c[idx] = OutT(finish(idx, v));
        }
    }
    // The row sums' column of workgroups multiplied zeros past N and stored nothing above: the
    // cooperative operations must be reached in uniform control flow (naga refuses an early
    // return before them), so it writes the sums last.
    if (is_row_sums_group(wg, groups)) {
        write_row_sums(row0, row0 + BM, lane, SG);
    }
}
