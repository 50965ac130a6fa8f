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

#include "common/matmul_params.wgsl"
override WG_N: u32 = 16;    // invocations per workgroup along N (each owns 4 columns)
override WG_M: u32 = 1;     // must be 1
override TM: u32 = 32;      // rows per invocation, at most TM_MAX
override SG: u32 = 8;       // the subgroup size

const TM_MAX: u32 = 32u;

@group(0) @binding(0) var<storage, read_write> c4: array<vec4<f32>>;  // (batch, M, N / 4)
@group(0) @binding(1) var<storage, read> a: array<f32>;               // (batch, M, K) or (batch, K, M)
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;        // (batch, K, N / 4) or (batch, N, K / 4)
@group(0) @binding(3) var<storage, read> bias: array<f32>;            // (N)
@group(0) @binding(4) var<storage, read> side4: array<vec4<f32>>;     // (batch, M, N / 4)
@group(0) @binding(6) var<uniform> p: MatmulParams;

#include "common/matmul_extras.wgsl"

@compute @workgroup_size(WG_N, WG_M, 1)
fn matmul_fwd_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32, @builtin(num_workgroups) groups: vec3<u32>) {
    if (is_row_sums_group(wg, groups)) {
        write_row_sums(wg.x * TM, (wg.x + 1u) * TM, lid.x, WG_N);
        return;
    }
    let batch = wg.z;
    let m0 = wg.x * TM;
    let t = tile4(batch, wg.y * WG_N + lid.x);

    var acc: array<vec4<f32>, TM_MAX>;
    var av: array<f32, TM_MAX>;
    for (var r = 0u; r < TM; r++) { acc[r] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < p.k; k0 += SG) {
        let kl = k0 + lane;
        let kc = min(kl, p.k - 1u);
        for (var r = 0u; r < TM; r++) {
            let v = a[t.ab + min(m0 + r, t.m_last) * t.row_step + kc * t.ka_step];
            av[r] = select(0.0, v, kl < p.k);
        }
        let quads = min(SG, p.k - k0) / 4u;   // K is a multiple of 4 on this path
        for (var q = 0u; q < quads; q++) {
            let k = k0 + 4u * q;
            let bk = load_b4(t.bb4, k, t.n0, t.ldb4);
            for (var r = 0u; r < TM; r++) {
                let x = av[r];
                let quad = vec4<f32>(subgroupShuffle(x, 4u * q), subgroupShuffle(x, 4u * q + 1u),
                                     subgroupShuffle(x, 4u * q + 2u), subgroupShuffle(x, 4u * q + 3u));
                acc[r] = fma4(acc[r], quad, bk);
            }
        }
    }

    if (t.live_n) { store_tile4(batch, m0, t.n0, &acc); }
}

#include "common/matmul_fma.wgsl"
#include "common/matmul_vec4.wgsl"
