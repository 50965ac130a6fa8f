// Adam / AdamW update of one parameter tensor, in place (decoupled weight decay, as
// torch.optim.AdamW; weight_decay = 0 gives Adam):
//   g = grad * grad_scale[0]          (1, or the global-norm clipping factor; below 0 the
//                                      gradients were not finite and the step is skipped)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + weight_decay * p),  bc_i = 1 - b_i^step
// The per-step values (lr, bias corrections) live in one uniform shared by every parameter's
// dispatch, rewritten once per step; each dispatch's own uniform holds only its length.

struct AdamSize { n: u32, _pad0: u32, _pad1: u32, _pad2: u32, }
struct AdamHyper { lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, bc1: f32, bc2: f32, _pad: f32, }

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read> grad_scale: array<f32>;   // (1)
@group(0) @binding(5) var<uniform> size: AdamSize;
@group(0) @binding(6) var<uniform> h: AdamHyper;

@compute @workgroup_size(WG)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let scale = grad_scale[0];
    if (i >= size.n || scale < 0.0) { return; }
    let g = grad[i] * scale;
    let mi = h.beta1 * m[i] + (1.0 - h.beta1) * g;
    let vi = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let pi = param[i];
    param[i] = pi - h.lr * ((mi / h.bc1) / (sqrt(vi / h.bc2) + h.eps) + h.weight_decay * pi);
}
