//! Embedding wgformer's kernels in an app: open a GPU, upload two matrices, multiply them
//! with the WGSL matmul, read the product back. `cargo run --release --example matmul`

use wgformer::kernels::{self, Matmul, MatmulShape};
use wgformer::Gpu;

fn main() -> wgformer::Result<()> {
    let gpu = Gpu::from_env()?;
    println!("adapter: {}", gpu.describe());

    // C (2x2) = A (2x3) * B (3x2)
    let a = gpu.upload("a", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    let b = gpu.upload("b", &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0])?;
    let c = gpu.zeros("c", 4)?;

    let matmul = Matmul::new(&gpu)?; // pipelines are built once and reused
    let dispatch = matmul.fwd(&gpu, &c, &a, &b, None, &MatmulShape::packed(1, 2, 2, 3, false, false))?;
    kernels::run(&gpu, &[&dispatch])?; // one pass, one submit, wait

    println!("C = {:?}", gpu.read(&c)?); // [58, 64, 139, 154]
    Ok(())
}
