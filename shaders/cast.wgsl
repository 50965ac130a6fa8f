// Precision casts of flat tensors, for mixed-precision products.
//   cast_f16: dst (f16) = src (f32) rounded to nearest, two elements per invocation (a pair
//             of halves is one 32-bit word, so no two invocations write the same word; an odd
//             count's last pair writes the tensor's padding half)
//   round_f16: dst (f32) = src rounded to the nearest f16 value (mixed precision on CPU
//             adapters: f16 operands' values in f32 storage, for the f32 matmul)
// Design rule: one pair (cast) or element (round) per invocation; the grid is 2D so n may
// exceed 65535 workgroups.

enable f16;

struct CastParams { n: u32, _pad0: u32, _pad1: u32, _pad2: u32, }

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> dst: array<vec2<f16>>;   // ceil(n / 2)
@group(0) @binding(1) var<storage, read> src: array<f32>;               // (n)
@group(0) @binding(2) var<uniform> p: CastParams;

@group(0) @binding(0) var<storage, read_write> rounded: array<f32>;     // (n)

@compute @workgroup_size(WG)
fn cast_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pair = gid.x + gid.y * nwg.x * WG;
    let i = 2u * pair;
    if (i < p.n) {
        let hi = select(0.0, src[i + 1u], i + 1u < p.n);
        dst[pair] = vec2<f16>(f16(src[i]), f16(hi));
    }
}

@compute @workgroup_size(WG)
fn round_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) {
        rounded[i] = f32(f16(src[i]));
    }
}
