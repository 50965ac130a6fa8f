// acc + x.x * bk[0] + x.y * bk[1] + x.z * bk[2] + x.w * bk[3]: four k of one row of A against
// four k of B (columns of bk), fused in this order in every register-tile kernel.
fn fma4(acc: vec4<f32>, x: vec4<f32>, bk: mat4x4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(x.w), bk[3], fma(vec4<f32>(x.z), bk[2], fma(vec4<f32>(x.y), bk[1], fma(vec4<f32>(x.x), bk[0], acc))));
}
