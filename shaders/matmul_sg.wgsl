// Batched matrix multiply for adapters with subgroups: the same product and params as
// matmul.wgsl's matmul_fwd_vec4 (N, K, ldb, ldc and batch strides multiples of 4). A separate
// file because a module that calls subgroup builtins does not compile where subgroups are
// missing (GL, some browsers).
// Design rule: each lane loads a different k of each of its TM rows of A and the subgroup shares
// them with subgroupShuffle, so A costs one load per lane per SG steps of k. On lavapipe, whose
// compiler does not see that A addresses are uniform across a workgroup row, this doubled the
// throughput of matmul_fwd_vec4. Needs subgroups of exactly SG lanes filling workgroup rows
// (WG_M == 1, WG_N a multiple of SG). Workgroup x walks row blocks, y column blocks.
// Rows per invocation: each lane's B vec4 (a per-lane load, which llvmpipe turns into a loop over
// lanes) feeds TM FMAs, so more rows pay until the accumulators stop fitting. On lavapipe at
// 2048^3 TM 8 / 16 / 32 ran at 16.5 / 22 / 26 GFLOP/s (27 / 33 for 16 / 32 at 1024^3); yet at
// 1024^3 TM 24 ran at 12 with TM_MAX 32 (30 with TM_MAX 24) and TM 48 or 64 at 12, so measure
// before changing TM or TM_MAX.

struct MatmulParams {
    m: u32, n: u32, k: u32, batch: u32,
    lda: u32, ldb: u32, ldc: u32,
    flags: u32,        // bit 0: add bias[n]; bit 1: accumulate into C
    stride_a: u32, stride_b: u32, stride_c: u32, _pad: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override WG_N: u32 = 16;    // invocations per workgroup along N (each owns 4 columns)
override WG_M: u32 = 1;     // must be 1
override TM: u32 = 32;      // rows per invocation, at most TM_MAX
override SG: u32 = 8;       // the subgroup size

const TM_MAX: u32 = 32u;

@group(0) @binding(0) var<storage, read_write> c4: array<vec4<f32>>;  // (batch, M, N / 4)
@group(0) @binding(1) var<storage, read> a: array<f32>;               // (batch, M, K) or (batch, K, M)
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;        // (batch, K, N / 4) or (batch, N, K / 4)
@group(0) @binding(3) var<storage, read> bias: array<f32>;            // (N)
@group(0) @binding(4) var<uniform> p: MatmulParams;

@compute @workgroup_size(WG_N, WG_M, 1)
fn matmul_fwd_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let batch = wg.z;
    let m0 = wg.x * TM;
    let n0 = min((wg.y * WG_N + lid.x) * 4u, p.n - 4u);
    let live_n = (wg.y * WG_N + lid.x) * 4u < p.n;
    let ab = batch * p.stride_a;
    let bb4 = batch * p.stride_b / 4u;
    let m_last = p.m - 1u;
    let ka_step = select(1u, p.lda, TRANS_A);
    let row_step = select(p.lda, 1u, TRANS_A);
    let ldb4 = p.ldb / 4u;

    var acc: array<vec4<f32>, TM_MAX>;
    var av: array<f32, TM_MAX>;
    for (var r = 0u; r < TM; r++) { acc[r] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < p.k; k0 += SG) {
        let kl = k0 + lane;
        let kc = min(kl, p.k - 1u);
        for (var r = 0u; r < TM; r++) {
            let v = a[ab + min(m0 + r, m_last) * row_step + kc * ka_step];
            av[r] = select(0.0, v, kl < p.k);
        }
        let quads = min(SG, p.k - k0) / 4u;   // K is a multiple of 4 on this path
        for (var q = 0u; q < quads; q++) {
            let k = k0 + 4u * q;
            var b0: vec4<f32>;
            var b1: vec4<f32>;
            var b2: vec4<f32>;
            var b3: vec4<f32>;
            if (TRANS_B) {
                let i = bb4 + n0 * ldb4 + k / 4u;
                let v0 = b4[i];
                let v1 = b4[i + ldb4];
                let v2 = b4[i + 2u * ldb4];
                let v3 = b4[i + 3u * ldb4];
                b0 = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
                b1 = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
                b2 = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
                b3 = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
            } else {
                let i = bb4 + k * ldb4 + n0 / 4u;
                b0 = b4[i];
                b1 = b4[i + ldb4];
                b2 = b4[i + 2u * ldb4];
                b3 = b4[i + 3u * ldb4];
            }
            for (var r = 0u; r < TM; r++) {
                let x = av[r];
                let a0 = subgroupShuffle(x, 4u * q);
                let a1 = subgroupShuffle(x, 4u * q + 1u);
                let a2 = subgroupShuffle(x, 4u * q + 2u);
                let a3 = subgroupShuffle(x, 4u * q + 3u);
                acc[r] = fma(vec4<f32>(a3), b3, fma(vec4<f32>(a2), b2, fma(vec4<f32>(a1), b1, fma(vec4<f32>(a0), b0, acc[r]))));
            }
        }
    }

    if (!live_n) { return; }
    let use_bias = (p.flags & 1u) != 0u;
    let accumulate = (p.flags & 2u) != 0u;
    var bias_v = vec4<f32>(0.0);
    if (use_bias) { bias_v = vec4<f32>(bias[n0], bias[n0 + 1u], bias[n0 + 2u], bias[n0 + 3u]); }
    let cb4 = batch * p.stride_c / 4u;
    let ldc4 = p.ldc / 4u;
    for (var r = 0u; r < TM; r++) {
        let m = m0 + r;
        if (m >= p.m) { break; }
        let idx = cb4 + m * ldc4 + n0 / 4u;
        var v = acc[r] + bias_v;
        if (accumulate) { v += c4[idx]; }
        c4[idx] = v;
    }
}
