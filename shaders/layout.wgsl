// Data movement: no arithmetic, only where values go.
//   swap12_fwd:      y (A, C, B, D) <- x (A, B, C, D): y[a, c, b, d] = x[a, b, c, d]. Splits heads
//                    ((B, T, H, D) -> (B, H, T, D)) and merges them back; each is the other's
//                    backward.
//   tokens_copy_fwd: dst[b, dst_off + t, :] = src[bs, src_off + t, :] for t < len, where bs = b, or
//                    0 when src has a batch of 1 (a broadcast class token). Concatenation and
//                    slicing along the token axis, and their backward, are made of these;
//                    tokens_copy4_fwd is the same four channels at a time.
//   fill_fwd:        out = value.
//   patchify_fwd:    patches (B, N, C*P*P) <- image (B, C, H, W): patch n = r * (W/P) + q holds
//                    image[b, :, r*P.., q*P..] flattened in (channel, row, col) order, as a
//                    Conv2d with kernel = stride = P sees it.
//   patchify_bwd:    dimage <- dpatches, the same mapping read the other way.
// Design rule: one output element per invocation, 2D grid.

struct Swap12Params { a: u32, b: u32, c: u32, d: u32, }
struct TokensParams { batch: u32, channels: u32, src_tokens: u32, dst_tokens: u32,
                      src_off: u32, dst_off: u32, len: u32, src_broadcast: u32, }
struct FillParams { n: u32, value: f32, _pad0: u32, _pad1: u32, }
struct PatchParams { batch: u32, channels: u32, height: u32, width: u32, size: u32, _pad0: u32, _pad1: u32, _pad2: u32, }

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<uniform> sw: Swap12Params;

@group(0) @binding(2) var<uniform> tk: TokensParams;

@group(0) @binding(1) var<uniform> fl: FillParams;

@group(0) @binding(2) var<uniform> pp: PatchParams;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn swap12_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= sw.a * sw.b * sw.c * sw.d) { return; }
    // i indexes the output (A, C, B, D).
    let d = i % sw.d;
    let b = (i / sw.d) % sw.b;
    let c = (i / (sw.d * sw.b)) % sw.c;
    let a = i / (sw.d * sw.b * sw.c);
    out[i] = inp[((a * sw.b + b) * sw.c + c) * sw.d + d];
}

@compute @workgroup_size(WG)
fn tokens_copy_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= tk.batch * tk.len * tk.channels) { return; }
    let ch = i % tk.channels;
    let t = (i / tk.channels) % tk.len;
    let b = i / (tk.channels * tk.len);
    let bs = select(b, 0u, tk.src_broadcast != 0u);
    out[(b * tk.dst_tokens + tk.dst_off + t) * tk.channels + ch] = inp[(bs * tk.src_tokens + tk.src_off + t) * tk.channels + ch];
}

// tokens_copy_fwd four channels at a time (channels a multiple of 4): a quarter of the
// invocations and index arithmetic, for the decoder's key/value caches.
@group(0) @binding(0) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> inp4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn tokens_copy4_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let c4 = tk.channels / 4u;
    if (i >= tk.batch * tk.len * c4) { return; }
    let ch = i % c4;
    let t = (i / c4) % tk.len;
    let b = i / (c4 * tk.len);
    let bs = select(b, 0u, tk.src_broadcast != 0u);
    out4[(b * tk.dst_tokens + tk.dst_off + t) * c4 + ch] = inp4[(bs * tk.src_tokens + tk.src_off + t) * c4 + ch];
}

@compute @workgroup_size(WG)
fn fill_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < fl.n) { out[i] = fl.value; }
}

// Element offsets of one patch element in the image and in the patch tensor.
fn patch_offsets(b: u32, c: u32, y: u32, x: u32) -> vec2<u32> {
    let per_row = pp.width / pp.size;
    let n = (y / pp.size) * per_row + x / pp.size;
    let k = (c * pp.size + y % pp.size) * pp.size + x % pp.size;
    let patches = per_row * (pp.height / pp.size);
    let kk = pp.channels * pp.size * pp.size;
    return vec2<u32>(((b * pp.channels + c) * pp.height + y) * pp.width + x, (b * patches + n) * kk + k);
}

// Offsets (image, patch tensor) of image element i.
fn image_element(i: u32) -> vec2<u32> {
    let x = i % pp.width;
    let y = (i / pp.width) % pp.height;
    let c = (i / (pp.width * pp.height)) % pp.channels;
    let b = i / (pp.width * pp.height * pp.channels);
    return patch_offsets(b, c, y, x);
}

@compute @workgroup_size(WG)
fn patchify_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // i indexes the image; each image element goes to exactly one patch element.
    let i = flat_index(gid, nwg);
    if (i >= pp.batch * pp.channels * pp.height * pp.width) { return; }
    let o = image_element(i);
    out[o.y] = inp[o.x];
}

@compute @workgroup_size(WG)
fn patchify_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pp.batch * pp.channels * pp.height * pp.width) { return; }
    let o = image_element(i);
    out[o.x] = inp[o.y];
}
