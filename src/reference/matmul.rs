//! Reference batched matmul with transposes, bias and accumulation (f64 accumulators).

use super::Real;
use crate::graph::MatmulShape;

/// c = op(a) * op(b) (+ bias) (+ c if `shape.accumulate`), with `shape`'s strides.
///
/// ```
/// use wgformer::kernels::MatmulShape;
/// use wgformer::reference::matmul::matmul_forward;
/// // (2x3) * (3x2), B given transposed as (2x3), plus a bias per column.
/// let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let b_t = [7.0f32, 9.0, 11.0, 8.0, 10.0, 12.0];
/// let mut c = [0.0f32; 4];
/// let shape = MatmulShape { bias: true, ..MatmulShape::packed(1, 2, 2, 3, false, true) };
/// matmul_forward(&mut c, &a, &b_t, Some(&[0.5, -0.5]), &shape);
/// assert_eq!(c, [58.5, 63.5, 139.5, 153.5]);
/// ```
pub fn matmul_forward<T: Real>(c: &mut [T], a: &[T], b: &[T], bias: Option<&[T]>, s: &MatmulShape) {
    for bt in 0..s.batch {
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0.0f64;
                for p in 0..s.k {
                    let av =
                        if s.trans_a { a[bt * s.stride_a + p * s.lda + i] } else { a[bt * s.stride_a + i * s.lda + p] };
                    let bv =
                        if s.trans_b { b[bt * s.stride_b + j * s.ldb + p] } else { b[bt * s.stride_b + p * s.ldb + j] };
                    acc += av.to_f64() * bv.to_f64();
                }
                if let Some(bias) = bias {
                    acc += bias[j].to_f64();
                }
                let idx = bt * s.stride_c + i * s.ldc + j;
                if s.accumulate {
                    acc += c[idx].to_f64();
                }
                c[idx] = T::of(acc);
            }
        }
    }
}

/// The row sums of op(A) (its first batch entry): M values, what the kernels' row-sums flag
/// writes beside the product.
pub fn row_sums_of_a<T: Real>(a: &[T], s: &MatmulShape) -> Vec<T> {
    let at = |i: usize, p: usize| if s.trans_a { a[p * s.lda + i] } else { a[i * s.lda + p] };
    (0..s.m).map(|i| T::of((0..s.k).map(|p| at(i, p).to_f64()).sum())).collect()
}

/// Gradients of c = a * b + bias for packed, untransposed (batch, M, K) x (batch, K, N):
/// da = dc * b^T, db = a^T * dc, dbias = sum over batch and rows of dc.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward<T: Real>(
    da: &mut [T],
    db: &mut [T],
    dbias: Option<&mut [T]>,
    dc: &[T],
    a: &[T],
    b: &[T],
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) {
    use crate::graph::MatmulShape as S;
    matmul_forward(da, dc, b, None, &S::packed(batch, m, k, n, false, true));
    matmul_forward(db, a, dc, None, &S::packed(batch, k, n, m, true, false));
    if let Some(dbias) = dbias {
        super::reduce::reduce_cols_forward(dbias, dc, batch * m, n);
    }
}
