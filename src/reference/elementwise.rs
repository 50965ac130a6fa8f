//! Reference elementwise ops.

use super::Real;

pub fn add_forward<T: Real>(out: &mut [T], a: &[T], b: &[T]) {
    for i in 0..out.len() {
        out[i] = a[i] + b[i];
    }
}

/// The gradient of a + b: dout for both inputs.
pub fn add_backward<T: Real>(da: &mut [T], db: &mut [T], dout: &[T]) {
    da.copy_from_slice(dout);
    db.copy_from_slice(dout);
}

pub fn mul_forward<T: Real>(out: &mut [T], a: &[T], b: &[T]) {
    for i in 0..out.len() {
        out[i] = a[i] * b[i];
    }
}

pub fn mul_backward<T: Real>(da: &mut [T], db: &mut [T], dout: &[T], a: &[T], b: &[T]) {
    for i in 0..dout.len() {
        da[i] = dout[i] * b[i];
        db[i] = dout[i] * a[i];
    }
}

pub fn scale_forward<T: Real>(out: &mut [T], a: &[T], alpha: T) {
    for i in 0..out.len() {
        out[i] = alpha * a[i];
    }
}

pub fn scale_backward<T: Real>(da: &mut [T], dout: &[T], alpha: T) {
    scale_forward(da, dout, alpha);
}

pub fn relu_forward<T: Real>(out: &mut [T], x: &[T]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = if v > T::of(0.0) { v } else { T::of(0.0) };
    }
}

/// dx = dy where x > 0, else 0.
pub fn relu_backward<T: Real>(dx: &mut [T], x: &[T], dy: &[T]) {
    for i in 0..dx.len() {
        dx[i] = if x[i] > T::of(0.0) { dy[i] } else { T::of(0.0) };
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::of(1.0) / (T::of(1.0) + (-x).exp())
}

/// out = x sigmoid(x) (SiLU, or swish).
pub fn silu_forward<T: Real>(out: &mut [T], x: &[T]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * sigmoid(v);
    }
}

/// dx = dy s (1 + x (1 - s)), s = sigmoid(x).
pub fn silu_backward<T: Real>(dx: &mut [T], x: &[T], dy: &[T]) {
    for i in 0..dx.len() {
        let s = sigmoid(x[i]);
        dx[i] = dy[i] * s * (T::of(1.0) + x[i] * (T::of(1.0) - s));
    }
}
