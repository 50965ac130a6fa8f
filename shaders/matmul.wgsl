// Batched matrix multiply: C[b] = op(A[b]) * op(B[b]) (+ bias[n]) (+ C[b] when accumulating).
//   op(A): (M, K). Stored (M, K) with row stride lda, or when TRANS_A as (K, M) with row stride lda.
//   op(B): (K, N). Stored (K, N) with row stride ldb, or when TRANS_B as (N, K) with row stride ldb.
//   C: (M, N), row stride ldc. Batch b starts at b * stride_{a,b,c}; a stride of 0 broadcasts.
// Design rule: register blocking, no workgroup memory. Each invocation keeps a TM x 4 block of C
// in registers; its TM rows depend only on the workgroup (when WG_M == 1), so every lane of a
// subgroup reads the same A element: on CPU adapters (lavapipe) that is one load plus a
// broadcast, on GPUs a cache hit. B is read as 4 consecutive columns per lane.
// K is walked in steps of 4, then the K % 4 remainder one at a time.
// Workgroup x walks row blocks and y column blocks: workgroups that run one after another share
// a strip of B, which stays in cache (columns-first order ran 2x slower at 2048^3 on lavapipe).

#include "common/matmul_params.wgsl"
override WG_N: u32 = 16;    // invocations per workgroup along N (each owns 4 columns)
override WG_M: u32 = 4;     // invocations per workgroup along M (each owns TM rows)
override TM: u32 = 4;       // rows per invocation, at most TM_MAX

const TM_MAX: u32 = 16u;

@group(0) @binding(0) var<storage, read_write> c: array<f32>;     // (batch, M, N)
@group(0) @binding(1) var<storage, read> a: array<f32>;           // (batch, M, K) or (batch, K, M)
@group(0) @binding(2) var<storage, read> b: array<f32>;           // (batch, K, N) or (batch, N, K)
@group(0) @binding(3) var<storage, read> bias: array<f32>;        // (N)
@group(0) @binding(6) var<uniform> p: MatmulParams;

#include "common/matmul_extras.wgsl"

@compute @workgroup_size(WG_N, WG_M, 1)
fn matmul_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) lane: u32, @builtin(num_workgroups) groups: vec3<u32>) {
    if (is_row_sums_group(wg, groups)) {
        write_row_sums(wg.x * WG_M * TM, (wg.x + 1u) * WG_M * TM, lane, WG_N * WG_M);
        return;
    }
    let batch = wg.z;
    // With WG_M == 1 the row block is a function of the workgroup alone (uniform).
    let ly = select(lid.y, 0u, WG_M == 1u);
    let m0 = (wg.x * WG_M + ly) * TM;
    let n0 = (wg.y * WG_N + lid.x) * 4u;
    let ab = batch * p.stride_a;
    let bb = batch * p.stride_b;
    let cb = batch * p.stride_c;

    // Rows and columns are clamped once, here: lanes past the edge compute copies of the last
    // row or column, which are never stored. So the K loop needs no bounds tests.
    let n_last = p.n - 1u;
    let m_last = p.m - 1u;
    let col_step = select(1u, p.ldb, TRANS_B);    // distance between columns of op(B)
    let kb_step = select(p.ldb, 1u, TRANS_B);     // distance between rows (k) of op(B)
    let ka_step = select(1u, p.lda, TRANS_A);     // distance between columns (k) of op(A)
    let row_step = select(p.lda, 1u, TRANS_A);    // distance between rows (m) of op(A)
    let c0 = min(n0, n_last) * col_step;
    let c1 = min(n0 + 1u, n_last) * col_step;
    let c2 = min(n0 + 2u, n_last) * col_step;
    let c3 = min(n0 + 3u, n_last) * col_step;

    var acc: array<vec4<f32>, TM_MAX>;
    for (var r = 0u; r < TM; r++) { acc[r] = vec4<f32>(0.0); }

    let k_full = p.k & ~3u;
    for (var k0 = 0u; k0 < k_full; k0 += 4u) {
        let kb = bb + k0 * kb_step;
        let kb1 = kb + kb_step;
        let kb2 = kb1 + kb_step;
        let kb3 = kb2 + kb_step;
        let bk = mat4x4<f32>(
            vec4<f32>(b[kb + c0], b[kb + c1], b[kb + c2], b[kb + c3]),
            vec4<f32>(b[kb1 + c0], b[kb1 + c1], b[kb1 + c2], b[kb1 + c3]),
            vec4<f32>(b[kb2 + c0], b[kb2 + c1], b[kb2 + c2], b[kb2 + c3]),
            vec4<f32>(b[kb3 + c0], b[kb3 + c1], b[kb3 + c2], b[kb3 + c3]));
        let ka = ab + k0 * ka_step;
        for (var r = 0u; r < TM; r++) {
            acc[r] = fma4(acc[r], a_quad(ka + min(m0 + r, m_last) * row_step, ka_step), bk);
        }
    }
    // The last K % 4 steps.
    for (var k = k_full; k < p.k; k++) {
        let kb = bb + k * kb_step;
        let bk = vec4<f32>(b[kb + c0], b[kb + c1], b[kb + c2], b[kb + c3]);
        let ka = ab + k * ka_step;
        for (var r = 0u; r < TM; r++) {
            acc[r] = fma(vec4<f32>(a[ka + min(m0 + r, m_last) * row_step]), bk, acc[r]);
        }
    }

    let use_bias = (p.flags & 1u) != 0u;
    let accumulate = (p.flags & 2u) != 0u;
    for (var r = 0u; r < TM; r++) {
        let m = m0 + r;
        if (m >= p.m) { break; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + j;
            if (n >= p.n) { break; }
            let idx = cb + m * p.ldc + n;
            var v = acc[r][j];
            if (use_bias) { v += bias[n]; }
            if (accumulate) { v += c[idx]; }
            c[idx] = v;
        }
    }
    // The epilogue in a pass of its own, reading C back (see store_tile4 in matmul_vec4.wgsl).
    if (has_epilogue()) {
        for (var m = m0; m < min(m0 + TM, p.m); m++) {
            for (var n = n0; n < min(n0 + 4u, p.n); n++) {
                let idx = cb + m * p.ldc + n;
                c[idx] = finish(idx, c[idx]);
            }
        }
    }
}

// A[ia], A[ia + step], A[ia + 2 step], A[ia + 3 step]: four k of one row of op(A).
fn a_quad(ia: u32, step: u32) -> vec4<f32> {
    return vec4<f32>(a[ia], a[ia + step], a[ia + 2u * step], a[ia + 3u * step]);
}

#include "common/matmul_fma.wgsl"
#include "common/matmul_vec4.wgsl"

// matmul_fwd_vec4: the same product when N, K, lda, ldb, ldc and the batch strides are all
// multiples of 4 (every Transformer layer). B and C are read and written as vec4: one load per
// lane instead of four, which on lavapipe turns four per-lane gathers into one.
@group(0) @binding(0) var<storage, read_write> c4: array<vec4<f32>>;  // (batch, M, N / 4)
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;        // (batch, K, N / 4) or (batch, N, K / 4)
@group(0) @binding(4) var<storage, read> side4: array<vec4<f32>>;     // (batch, M, N / 4)

@compute @workgroup_size(WG_N, WG_M, 1)
fn matmul_fwd_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(local_invocation_index) lane: u32, @builtin(num_workgroups) groups: vec3<u32>) {
    if (is_row_sums_group(wg, groups)) {
        write_row_sums(wg.x * WG_M * TM, (wg.x + 1u) * WG_M * TM, lane, WG_N * WG_M);
        return;
    }
    let batch = wg.z;
    let ly = select(lid.y, 0u, WG_M == 1u);
    let m0 = (wg.x * WG_M + ly) * TM;
    let t = tile4(batch, wg.y * WG_N + lid.x);

    var acc: array<vec4<f32>, TM_MAX>;
    for (var r = 0u; r < TM; r++) { acc[r] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let bk = load_b4(t.bb4, k0, t.n0, t.ldb4);
        let ka = t.ab + k0 * t.ka_step;
        for (var r = 0u; r < TM; r++) {
            acc[r] = fma4(acc[r], a_quad(ka + min(m0 + r, t.m_last) * t.row_step, t.ka_step), bk);
        }
    }

    if (t.live_n) { store_tile4(batch, m0, t.n0, &acc); }
}
