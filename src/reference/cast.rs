//! Precision casts: f32 values rounded to the nearest f16 (ties to even, overflow to inf), as
//! `shaders/cast.wgsl` computes them. No gradient: a cast's backward is the identity.

/// `x` rounded to f16 values, returned as f32.
pub fn round_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// `v` rounded to the nearest f16 value (what an f16 tensor stores), in any [`super::Real`].
pub fn round_f16_real<T: super::Real>(v: T) -> T {
    T::of(half::f16::from_f64(v.to_f64()).to_f64())
}
