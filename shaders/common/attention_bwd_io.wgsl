// The backward bindings of the fused attention kernels (attention_delta's are attention.wgsl's).

// attention_dq: dq from q, k, v, do, lse, delta.
@group(0) @binding(0) var<storage, read_write> dq_out: array<Grad4>;
@group(0) @binding(1) var<storage, read> bq: array<Qkv4>;
@group(0) @binding(2) var<storage, read> bk: array<Qkv4>;
@group(0) @binding(3) var<storage, read> bv: array<Qkv4>;
@group(0) @binding(4) var<storage, read> bdo: array<Grad4>;
@group(0) @binding(5) var<storage, read> blse: array<f32>;
@group(0) @binding(6) var<storage, read> bdelta: array<f32>;
@group(0) @binding(7) var<storage, read> blens: array<u32>;
@group(0) @binding(8) var<uniform> bp: AttnParams;

// attention_dkv: dk and dv (two outputs), then the same inputs as attention_dq.
@group(0) @binding(0) var<storage, read_write> dk_out: array<Grad4>;
@group(0) @binding(1) var<storage, read_write> dv_out: array<Grad4>;
@group(0) @binding(2) var<storage, read> cq: array<Qkv4>;
@group(0) @binding(3) var<storage, read> ck: array<Qkv4>;
@group(0) @binding(4) var<storage, read> cv: array<Qkv4>;
@group(0) @binding(5) var<storage, read> cdo: array<Grad4>;
@group(0) @binding(6) var<storage, read> clse: array<f32>;
@group(0) @binding(7) var<storage, read> cdelta: array<f32>;
@group(0) @binding(8) var<storage, read> clens: array<u32>;
@group(0) @binding(9) var<uniform> cp: AttnParams;
