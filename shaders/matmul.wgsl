// Batched matrix multiply: C[b] = op(A[b]) * op(B[b]) (+ bias[n]) (+ C[b] when accumulating).
//   op(A): (M, K). Stored (M, K) with row stride lda, or when TRANS_A as (K, M) with row stride lda.
//   op(B): (K, N). Stored (K, N) with row stride ldb, or when TRANS_B as (N, K) with row stride ldb.
//   C: (M, N), row stride ldc. Batch b starts at b * stride_{a,b,c}; a stride of 0 broadcasts.
// Design rule: register blocking, no workgroup memory. Each invocation keeps a TM x 4 block of C
// in registers; its TM rows depend only on the workgroup (when WG_M == 1), so every lane of a
// subgroup reads the same A element: on CPU adapters (lavapipe) that is one load plus a
// broadcast, on GPUs a cache hit. B is read as 4 consecutive columns per lane.
// K is walked in steps of 4; out-of-range rows, columns and k read as 0 and are not stored.

struct MatmulParams {
    m: u32, n: u32, k: u32, batch: u32,
    lda: u32, ldb: u32, ldc: u32,
    flags: u32,        // bit 0: add bias[n]; bit 1: accumulate into C
    stride_a: u32, stride_b: u32, stride_c: u32, _pad: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override WG_N: u32 = 16;    // invocations per workgroup along N (each owns 4 columns)
override WG_M: u32 = 4;     // invocations per workgroup along M (each owns TM rows)
override TM: u32 = 4;       // rows per invocation, at most TM_MAX

const TM_MAX: u32 = 16u;

@group(0) @binding(0) var<storage, read_write> c: array<f32>;     // (batch, M, N)
@group(0) @binding(1) var<storage, read> a: array<f32>;           // (batch, M, K) or (batch, K, M)
@group(0) @binding(2) var<storage, read> b: array<f32>;           // (batch, K, N) or (batch, N, K)
@group(0) @binding(3) var<storage, read> bias: array<f32>;        // (N)
@group(0) @binding(4) var<uniform> p: MatmulParams;

// op(A)[m, k] of batch base `ab`, 0 when k is out of range (m is clamped by the caller).
fn load_a(ab: u32, m: u32, k: u32) -> f32 {
    let kk = min(k, p.k - 1u);
    var idx = ab + m * p.lda + kk;
    if (TRANS_A) { idx = ab + kk * p.lda + m; }
    return select(0.0, a[idx], k < p.k);
}

// op(B)[k, n] of batch base `bb`, 0 when k or n is out of range.
fn load_b(bb: u32, k: u32, n: u32) -> f32 {
    let kk = min(k, p.k - 1u);
    let nn = min(n, p.n - 1u);
    var idx = bb + kk * p.ldb + nn;
    if (TRANS_B) { idx = bb + nn * p.ldb + kk; }
    return select(0.0, b[idx], k < p.k && n < p.n);
}

fn load_b_row(bb: u32, k: u32, n0: u32) -> vec4<f32> {
    return vec4<f32>(load_b(bb, k, n0), load_b(bb, k, n0 + 1u), load_b(bb, k, n0 + 2u), load_b(bb, k, n0 + 3u));
}

@compute @workgroup_size(WG_N, WG_M, 1)
fn matmul_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let batch = wg.z;
    // With WG_M == 1 the row block is a function of the workgroup alone (uniform).
    let ly = select(lid.y, 0u, WG_M == 1u);
    let m0 = (wg.y * WG_M + ly) * TM;
    let n0 = (wg.x * WG_N + lid.x) * 4u;
    let ab = batch * p.stride_a;
    let bb = batch * p.stride_b;
    let cb = batch * p.stride_c;

    var acc: array<vec4<f32>, TM_MAX>;
    for (var r = 0u; r < TM; r++) { acc[r] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let b0 = load_b_row(bb, k0, n0);
        let b1 = load_b_row(bb, k0 + 1u, n0);
        let b2 = load_b_row(bb, k0 + 2u, n0);
        let b3 = load_b_row(bb, k0 + 3u, n0);
        for (var r = 0u; r < TM; r++) {
            let m = min(m0 + r, p.m - 1u);
            let a0 = load_a(ab, m, k0);
            let a1 = load_a(ab, m, k0 + 1u);
            let a2 = load_a(ab, m, k0 + 2u);
            let a3 = load_a(ab, m, k0 + 3u);
            acc[r] = fma(vec4<f32>(a0), b0, fma(vec4<f32>(a1), b1, fma(vec4<f32>(a2), b2, fma(vec4<f32>(a3), b3, acc[r]))));
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
}
