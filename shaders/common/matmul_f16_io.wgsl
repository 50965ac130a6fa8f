// The bindings of the f16-operand matmuls (matmul_f16.wgsl, matmul_coop.wgsl).

// C's storage: f16 in the form for products whose output mixed precision keeps in half
// precision (shaders::with_f16); accumulation stays f32.
alias OutT = f32;
@group(0) @binding(0) var<storage, read_write> c: array<OutT>;     // (batch, M, N)
@group(0) @binding(1) var<storage, read> a: array<f16>;           // (batch, M, K) or (batch, K, M)
@group(0) @binding(2) var<storage, read> b: array<f16>;           // (batch, K, N) or (batch, N, K)
@group(0) @binding(3) var<storage, read> bias: array<f32>;        // (N)
@group(0) @binding(6) var<uniform> p: MatmulParams;
