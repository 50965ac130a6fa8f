// Mean label-smoothed cross-entropy over rows of logits (R, V) with u32 targets (R), fused with
// its gradient, in three dispatches:
//   crossentropy_count:  one workgroup: n = rows whose target y != ignore, inv_n = 1/n and
//                        grad = grad_mul / n (both 0 when n = 0; grad_mul is the loss scale of
//                        mixed-precision training, 1 otherwise)
//   crossentropy_fwd:    per row r with target y != ignore (one workgroup per row):
//                        lse = log sum_c exp(x_c),  loss_r = -(1-e)(x_y - lse) - e (mean_c x_c - lse)
//                        dlogits[r, c] = grad (exp(x_c - lse) - (1-e)[c == y] - e/V); ignored rows: 0, loss_r = 0
//   crossentropy_reduce: one workgroup: loss = inv_n sum_r loss_r.
// The gradient is scaled as it is written (n depends on the targets alone), so that an f16
// dlogits holds the loss-scaled values: unscaled probabilities over a large vocabulary
// (1/V of 1/n) would be f16 subnormals. No second pass over (R, V).
// Design rule: the row kernel follows softmax.wgsl (WG lanes stride a row, workgroup-memory tree).

struct CeParams { rows: u32, vocab: u32, smoothing: f32, ignore_index: u32, has_ignore: u32, _pad0: u32, _pad1: u32, _pad2: u32, }

override WG: u32 = 64;

// The logits' and dlogits' storage: f16 in the forms where mixed precision keeps them in half
// precision (shaders::with_f16); the loss and the arithmetic stay f32.
alias LogitT = f32;
alias DlogitT = f32;

@group(0) @binding(0) var<storage, read_write> dlogits: array<DlogitT>; // (R, V)
@group(0) @binding(1) var<storage, read_write> row_loss: array<f32>;   // (R)
@group(0) @binding(2) var<storage, read> logits: array<LogitT>;         // (R, V)
@group(0) @binding(3) var<storage, read> targets: array<u32>;          // (R)
@group(0) @binding(4) var<storage, read> scales: array<f32>;           // (2): inv_n, grad
@group(0) @binding(5) var<uniform> p: CeParams;

@group(0) @binding(0) var<storage, read_write> ct_scales: array<f32>;  // (2): inv_n, grad
@group(0) @binding(1) var<storage, read> ct_targets: array<u32>;       // (R)
@group(0) @binding(2) var<storage, read> ct_grad_mul: array<f32>;      // (1)
@group(0) @binding(3) var<uniform> ct_p: CeParams;

@group(0) @binding(0) var<storage, read_write> rd_loss: array<f32>;    // (1)
@group(0) @binding(1) var<storage, read> rd_row_loss: array<f32>;      // (R)
@group(0) @binding(2) var<storage, read> rd_scales: array<f32>;        // (2)
@group(0) @binding(3) var<uniform> rd_p: CeParams;

#include "common/reduce_wg.wgsl"

fn ignored(t: u32, has_ignore: u32, ignore_index: u32) -> bool {
    return has_ignore != 0u && t == ignore_index;
}

@compute @workgroup_size(WG)
fn crossentropy_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    let live = row < p.rows;
    let r = min(row, p.rows - 1u);
    let base = r * p.vocab;
    let y = targets[r];
    let skip = ignored(y, p.has_ignore, p.ignore_index);
    var m = -3.402823e38;
    for (var c = lid; c < p.vocab; c += WG) { m = max(m, f32(logits[base + c])); }
    m = reduce_max(m, lid);
    var se = 0.0;
    var sx = 0.0;
    for (var c = lid; c < p.vocab; c += WG) {
        let x = f32(logits[base + c]);
        se += exp(x - m);
        sx += x;
    }
    let lse = m + log(reduce_sum(se, lid));
    let mean_x = reduce_sum(sx, lid) / f32(p.vocab);
    if (!live) { return; }
    let e = p.smoothing;
    let off = e / f32(p.vocab);
    let grad = scales[1];
    for (var c = lid; c < p.vocab; c += WG) {
        var d = exp(f32(logits[base + c]) - lse) - off;
        if (c == y) { d -= 1.0 - e; }
        dlogits[base + c] = DlogitT(select(d * grad, 0.0, skip));
    }
    if (lid == 0u) {
        // A target outside the vocabulary reads logit 0: the host checks targets on upload.
        let xy = f32(logits[base + min(y, p.vocab - 1u)]);
        let loss = -(1.0 - e) * (xy - lse) - e * (mean_x - lse);
        row_loss[r] = select(loss, 0.0, skip);
    }
}

@compute @workgroup_size(WG)
fn crossentropy_count(@builtin(local_invocation_index) lid: u32) {
    var n = 0.0;
    for (var r = lid; r < ct_p.rows; r += WG) {
        n += select(1.0, 0.0, ignored(ct_targets[r], ct_p.has_ignore, ct_p.ignore_index));
    }
    let count = reduce_sum(n, lid);
    if (lid == 0u) {
        let inv_n = select(1.0 / count, 0.0, count == 0.0);
        ct_scales[0] = inv_n;
        ct_scales[1] = inv_n * ct_grad_mul[0];
    }
}

@compute @workgroup_size(WG)
fn crossentropy_reduce(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var r = lid; r < rd_p.rows; r += WG) { s += rd_row_loss[r]; }
    let total = reduce_sum(s, lid);
    if (lid == 0u) { rd_loss[0] = total * rd_scales[0]; }
}
