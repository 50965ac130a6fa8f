// Batched matrix multiply for GPUs: the same product and params as matmul.wgsl, any shape.
// Design rule (the opposite of matmul.wgsl's, which is for CPU adapters): a workgroup of 16 x 16
// invocations owns a (16 TM) x (16 TN) block of C. For each step of BK along k it copies the
// block's strip of A and of B into workgroup memory once, with loads that neighbouring lanes
// make at neighbouring addresses, and then every invocation reads its TM values of A and TN of B
// per k from there (broadcasts and conflict-free vec4 reads) and does TM x TN fused
// multiply-adds in registers. The next strip is loaded into registers while this one is used;
// with BUFFERS 2 the strips alternate between two halves of workgroup memory, so that one
// barrier per strip suffices (the next strip is stored while others may still read this one).
// An invocation owns rows g * 64 + ty * 4 + i (g < TM / 4, i < 4) and columns g * 64 + tx * 4 + j:
// vec4 groups 64 apart, so that the 16 lanes along x read 16 consecutive vec4 of the B strip.
// Its accumulators are named variables (`r<row><column group>`), each multiply-add written out:
// a private array indexed by loop counters is placed in local memory by some drivers (NVIDIA's
// did so for the 8 x 8 block, at a tenth of the speed); tests/cpu/shaders_registers.rs keeps it so.
// Split-K (p.k_split != 0): products with too few blocks of C to fill the GPU and a long K
// (weight gradients) run splits x the workgroups, each over k_split of K, writing partial
// blocks to `partials`; matmul_reduce_splits then sums them into C with the bias, the
// accumulation and matmul_extras.wgsl's epilogue. No atomics: the sum's order is fixed.

#include "common/matmul_params.wgsl"
override TM: u32 = 8u;      // rows per invocation: 4 or 8 (block of 64 or 128 rows)
override TN: u32 = 8u;      // columns per invocation: 4 or 8 (block of 64 or 128 columns)

override BK: u32 = 8u;      // k per strip: 8 or 16
override BUFFERS: u32 = 1u; // strips held at once: 1, or 2 (double-buffered)
override STRIP4: u32 = 256u; // vec4 per strip array: BK * ROW4 * BUFFERS (set with them)
const WG: u32 = 16u;        // invocations per workgroup along x and along y
const ROW4: u32 = 32u;      // vec4 per strip row: room for the largest block, 128
const GROUP4: u32 = 16u;    // vec4 between an invocation's groups (64 rows or columns)
const LANES: u32 = 256u;    // invocations per workgroup

@group(0) @binding(0) var<storage, read_write> c: array<f32>;     // (batch, M, N)
@group(0) @binding(1) var<storage, read> a: array<f32>;           // (batch, M, K) or (batch, K, M)
@group(0) @binding(2) var<storage, read> b: array<f32>;           // (batch, K, N) or (batch, N, K)
@group(0) @binding(3) var<storage, read> bias: array<f32>;        // (N)
@group(0) @binding(6) var<uniform> p: MatmulParams;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;    // (batch, splits, M, N)

#include "common/matmul_extras.wgsl"

// Strips of A (as [k][m]) and B (as [k][n]), 4 consecutive rows or columns per vec4.
var<workgroup> a_strip: array<vec4<f32>, STRIP4>;
var<workgroup> b_strip: array<vec4<f32>, STRIP4>;

#include "common/matmul_load.wgsl"

@compute @workgroup_size(16, 16, 1)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) tid: u32, @builtin(num_workgroups) groups: vec3<u32>) {
    let bm = WG * TM;
    let bn = WG * TN;
    let m_base = wg.x * bm;
    if (is_row_sums_group(wg, groups)) {
        write_row_sums(m_base, m_base + bm, tid, WG * WG);
        return;
    }
    let n_base = wg.y * bn;
    // z: the batch entry, or with split-K the (batch entry, split) pair: k from k_begin to k_end.
    let splits = split_count();
    let batch = wg.z / splits;
    let k_begin = (wg.z % splits) * p.k_split;
    let k_end = select(p.k, min(k_begin + p.k_split, p.k), p.k_split != 0u);
    let ab = batch * p.stride_a;
    let bb = batch * p.stride_b;
    // Where the block goes: C's batch entry, or with split-K this split's packed (M, N) partial.
    let cb = select(batch * p.stride_c, wg.z * p.m * p.n, p.k_split != 0u);

    // Each invocation copies the strips' vec4 number tid (and tid + 256 at BK 16): see a_part.
    var next_a0 = vec4<f32>(0.0); var next_a1 = vec4<f32>(0.0);
    var next_b0 = vec4<f32>(0.0); var next_b1 = vec4<f32>(0.0);

    var r00 = vec4<f32>(0.0); var r01 = vec4<f32>(0.0); var r10 = vec4<f32>(0.0); var r11 = vec4<f32>(0.0);
    var r20 = vec4<f32>(0.0); var r21 = vec4<f32>(0.0); var r30 = vec4<f32>(0.0); var r31 = vec4<f32>(0.0);
    var r40 = vec4<f32>(0.0); var r41 = vec4<f32>(0.0); var r50 = vec4<f32>(0.0); var r51 = vec4<f32>(0.0);
    var r60 = vec4<f32>(0.0); var r61 = vec4<f32>(0.0); var r70 = vec4<f32>(0.0); var r71 = vec4<f32>(0.0);

    // k_split is a multiple of BK: a strip never reaches into the next split's k.
    next_a0 = fetch_a(ab, m_base, k_begin, tid);
    next_b0 = fetch_b(bb, n_base, k_begin, tid);
    if (BK == 16u) {
        next_a1 = fetch_a(ab, m_base, k_begin, tid + LANES);
        next_b1 = fetch_b(bb, n_base, k_begin, tid + LANES);
    }

    // The first strip, then per strip: the next one's loads, this one's multiply-adds, the
    // next one stored (into the other half with two buffers, else after a barrier).
    var buf = 0u;
    put_a(0u, tid, next_a0);
    put_b(0u, tid, next_b0);
    if (BK == 16u) {
        put_a(0u, tid + LANES, next_a1);
        put_b(0u, tid + LANES, next_b1);
    }
    workgroupBarrier();
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        // Start the next strip's loads; they complete while this strip is multiplied.
        let k1 = k0 + BK;
        if (k1 < k_end) {
            next_a0 = fetch_a(ab, m_base, k1, tid);
            next_b0 = fetch_b(bb, n_base, k1, tid);
            if (BK == 16u) {
                next_a1 = fetch_a(ab, m_base, k1, tid + LANES);
                next_b1 = fetch_b(bb, n_base, k1, tid + LANES);
            }
        }
        let base = buf * BK * ROW4;
        for (var kk = 0u; kk < BK; kk++) {
            let row = base + kk * ROW4;
            let b0 = b_strip[row + lid.x];
            let a0 = a_strip[row + lid.y];
            r00 = fma(vec4<f32>(a0.x), b0, r00);
            r10 = fma(vec4<f32>(a0.y), b0, r10);
            r20 = fma(vec4<f32>(a0.z), b0, r20);
            r30 = fma(vec4<f32>(a0.w), b0, r30);
            // TM and TN are pipeline constants: the driver drops the branches not taken.
            if (TN == 8u) {
                let b1 = b_strip[row + GROUP4 + lid.x];
                r01 = fma(vec4<f32>(a0.x), b1, r01);
                r11 = fma(vec4<f32>(a0.y), b1, r11);
                r21 = fma(vec4<f32>(a0.z), b1, r21);
                r31 = fma(vec4<f32>(a0.w), b1, r31);
            }
            if (TM == 8u) {
                let a1 = a_strip[row + GROUP4 + lid.y];
                r40 = fma(vec4<f32>(a1.x), b0, r40);
                r50 = fma(vec4<f32>(a1.y), b0, r50);
                r60 = fma(vec4<f32>(a1.z), b0, r60);
                r70 = fma(vec4<f32>(a1.w), b0, r70);
                if (TN == 8u) {
                    let b1 = b_strip[row + GROUP4 + lid.x];
                    r41 = fma(vec4<f32>(a1.x), b1, r41);
                    r51 = fma(vec4<f32>(a1.y), b1, r51);
                    r61 = fma(vec4<f32>(a1.z), b1, r61);
                    r71 = fma(vec4<f32>(a1.w), b1, r71);
                }
            }
        }
        if (BUFFERS == 2u) {
            buf = 1u - buf;
        } else {
            workgroupBarrier();
        }
        if (k1 < k_end) {
            put_a(buf, tid, next_a0);
            put_b(buf, tid, next_b0);
            if (BK == 16u) {
                put_a(buf, tid + LANES, next_a1);
                put_b(buf, tid + LANES, next_b1);
            }
        }
        workgroupBarrier();
    }

    // Row m_base + g * 64 + ty * 4 + i holds r<g * 4 + i><column group>.
    let m0 = m_base + lid.y * 4u;
    let n0 = n_base + lid.x * 4u;
    store_row(cb, m0, n0, r00, r01);
    store_row(cb, m0 + 1u, n0, r10, r11);
    store_row(cb, m0 + 2u, n0, r20, r21);
    store_row(cb, m0 + 3u, n0, r30, r31);
    if (TM == 8u) {
        store_row(cb, m0 + 64u, n0, r40, r41);
        store_row(cb, m0 + 65u, n0, r50, r51);
        store_row(cb, m0 + 66u, n0, r60, r61);
        store_row(cb, m0 + 67u, n0, r70, r71);
    }
}

// Where the strips' vec4 number i sits: (k, first of its 4 rows of A or columns of B, as a
// vec4 index). Lanes next to each other take neighbouring addresses of the stored layout:
// along k when k is the contiguous index (A untransposed, B transposed), along m or n otherwise.
fn a_part(i: u32) -> vec2<u32> {
    let bm4 = WG * TM / 4u;
    return select(vec2<u32>(i % BK, i / BK), vec2<u32>(i / bm4, i % bm4), TRANS_A);
}

fn b_part(i: u32) -> vec2<u32> {
    let bn4 = WG * TN / 4u;
    return select(vec2<u32>(i / bn4, i % bn4), vec2<u32>(i % BK, i / BK), TRANS_B);
}

// The strip at k0's vec4 number i of A (4 rows at one k), 0 past the strip or the matrix.
fn fetch_a(ab: u32, m_base: u32, k0: u32, i: u32) -> vec4<f32> {
    if (i >= BK * WG * TM / 4u) { return vec4<f32>(0.0); }
    let part = a_part(i);
    let k = k0 + part.x;
    let m = m_base + part.y * 4u;
    return vec4<f32>(load_a(ab, m, k), load_a(ab, m + 1u, k), load_a(ab, m + 2u, k), load_a(ab, m + 3u, k));
}

// The strip at k0's vec4 number i of B (4 columns at one k), 0 past the strip or the matrix.
fn fetch_b(bb: u32, n_base: u32, k0: u32, i: u32) -> vec4<f32> {
    if (i >= BK * WG * TN / 4u) { return vec4<f32>(0.0); }
    let part = b_part(i);
    let k = k0 + part.x;
    let n = n_base + part.y * 4u;
    return vec4<f32>(load_b(bb, k, n), load_b(bb, k, n + 1u), load_b(bb, k, n + 2u), load_b(bb, k, n + 3u));
}

// Stores vec4 number i of A's strip (of B's, below) into strip buffer `buf`.
fn put_a(buf: u32, i: u32, v: vec4<f32>) {
    if (i < BK * WG * TM / 4u) {
        let part = a_part(i);
        a_strip[buf * BK * ROW4 + part.x * ROW4 + part.y] = v;
    }
}

fn put_b(buf: u32, i: u32, v: vec4<f32>) {
    if (i < BK * WG * TN / 4u) {
        let part = b_part(i);
        b_strip[buf * BK * ROW4 + part.x * ROW4 + part.y] = v;
    }
}

// One row's values: columns n0.. (v0) and, with TN 8, n0 + 64.. (v1), within the matrix, with
// the bias, the accumulation and the epilogue the flags ask for; a split's go to its partial.
fn store_row(cb: u32, m: u32, n0: u32, v0: vec4<f32>, v1: vec4<f32>) {
    if (m >= p.m) { return; }
    if (p.k_split != 0u) {
        store_partial(cb, m, n0, v0, v1);
        return;
    }
    store4(cb, m, n0, v0);
    if (TN == 8u) { store4(cb, m, n0 + 64u, v1); }
}

// Splits per batch entry: 1 without split-K.
fn split_count() -> u32 {
    return select(1u, (p.k + p.k_split - 1u) / p.k_split, p.k_split != 0u);
}

// A split's row m of its partial block at pb: columns n0.. (v0) and, with TN 8, n0 + 64.. (v1).
fn store_partial(pb: u32, m: u32, n0: u32, v0: vec4<f32>, v1: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.n) { partials[pb + m * p.n + n0 + j] = v0[j]; }
        if (TN == 8u && n0 + 64u + j < p.n) { partials[pb + m * p.n + n0 + 64u + j] = v1[j]; }
    }
}

// C's element i (of batch x M x N, packed) = the sum of its splits' partials, in split order,
// with the bias, the accumulation and the epilogue the flags ask for.
@compute @workgroup_size(256, 1, 1)
fn matmul_reduce_splits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    let mn = p.m * p.n;
    if (i >= p.batch * mn) { return; }
    let splits = split_count();
    let batch = i / mn;
    let r = i % mn;
    var x = 0.0;
    for (var s = 0u; s < splits; s++) {
        x += partials[(batch * splits + s) * mn + r];
    }
    let n = r % p.n;
    let idx = batch * p.stride_c + (r / p.n) * p.ldc + n;
    if ((p.flags & 1u) != 0u) { x += bias[n]; }
    if ((p.flags & 2u) != 0u) { x += c[idx]; }
    c[idx] = finish(idx, x);
}

fn store4(cb: u32, m: u32, n0: u32, v: vec4<f32>) {
    let use_bias = (p.flags & 1u) != 0u;
    let accumulate = (p.flags & 2u) != 0u;
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n >= p.n) { return; }
        let idx = cb + m * p.ldc + n;
        var x = v[j];
        if (use_bias) { x += bias[n]; }
        if (accumulate) { x += c[idx]; }
        c[idx] = finish(idx, x);
    }
}
