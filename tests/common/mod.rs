//! Shared test helpers: the GPUs to test on, random data, and `assert_close`.
#![allow(dead_code)]

pub mod attention;
pub mod cli;
pub mod data_parallel;
pub mod golden;
pub mod graphs;
pub mod mixed;
pub mod reference_losses;

use std::sync::OnceLock;
use wgformer::settings::{Settings, TestSettings};
use wgformer::{Gpu, GpuOptions};

/// The test variables (`WGFORMER_TEST_BACKENDS`, `WGFORMER_ALLOW_NO_GPU`, ...), read once.
pub fn test_settings() -> &'static TestSettings {
    static SETTINGS: OnceLock<TestSettings> = OnceLock::new();
    SETTINGS.get_or_init(|| TestSettings::from_env().expect("valid WGFORMER_* test settings"))
}

/// The library's settings from the environment (what the GPU tests open devices with).
pub fn env_settings() -> Settings {
    Settings::from_env().expect("valid WGFORMER_* settings")
}

static GPUS: OnceLock<Vec<(String, Option<Gpu>)>> = OnceLock::new();

/// Opens a device on every test backend with `settings`. A backend without an adapter fails
/// the test, unless WGFORMER_ALLOW_NO_GPU=1 lets it skip: a run that tested nothing must not
/// pass by default.
fn open_all_with(settings: &Settings) -> Vec<(String, Option<Gpu>)> {
    test_settings()
        .backends
        .iter()
        .map(|&backend| {
            let name = format!("{backend:?}").to_ascii_lowercase();
            let opts = GpuOptions {
                backend: Some(wgformer::gpu::wgpu_backend(backend)),
                ..GpuOptions::from_settings(settings.clone())
            };
            match Gpu::with_options(&opts) {
                Ok(g) => (name, Some(g)),
                Err(e) if test_settings().allow_no_gpu => {
                    eprintln!("WGFORMER_ALLOW_NO_GPU=1: skipping GPU tests on {name}: {e}");
                    (name, None)
                }
                Err(e) => panic!(
                    "no {name} adapter for the GPU tests: {e}\n\
                     On Debian/Ubuntu without a GPU, Mesa's software drivers provide both Vulkan and GL: \
                     `apt-get install mesa-vulkan-drivers libegl-mesa0 libgl1-mesa-dri`. \
                     To run only the CPU tests, set WGFORMER_ALLOW_NO_GPU=1 (GPU tests then skip); \
                     WGFORMER_TEST_BACKENDS=vulkan limits the backends tested."
                ),
            }
        })
        .collect()
}

fn open_all() -> Vec<(String, Option<Gpu>)> {
    open_all_with(&env_settings())
}

/// Runs `f` on every test backend on devices newly opened with the environment's settings
/// changed by `change` (tests of one setting: nothing else shares these devices).
pub fn for_each_gpu_with(change: impl FnOnce(&mut Settings), mut f: impl FnMut(&Gpu)) {
    let mut settings = env_settings();
    change(&mut settings);
    for (name, gpu) in open_all_with(&settings) {
        if let Some(gpu) = gpu {
            eprintln!("[{name}] {}", gpu.describe());
            f(&gpu);
        }
    }
}

/// Runs `f` once on every test backend (a backend without an adapter fails the test, unless
/// WGFORMER_ALLOW_NO_GPU=1). A failure names the backend.
pub fn for_each_gpu(mut f: impl FnMut(&Gpu)) {
    for (name, gpu) in GPUS.get_or_init(open_all) {
        if let Some(gpu) = gpu {
            eprintln!("[{name}] {}", gpu.describe());
            f(gpu);
        }
    }
}

/// Like [`for_each_gpu`], but on newly opened devices that no other test shares (for tests
/// that count submits or otherwise need the device to themselves).
pub fn for_each_fresh_gpu(mut f: impl FnMut(&Gpu)) {
    for (_, gpu) in open_all() {
        if let Some(gpu) = gpu {
            f(&gpu);
        }
    }
}

/// Reproducible test data: the library's generator, with test helpers.
pub struct Rng(wgformer::util::rng::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(wgformer::util::rng::Rng::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.uniform() * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    pub fn vec_f32(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (self.uniform() * scale) as f32).collect()
    }
}

/// Fails unless every |got - want| <= atol + rtol * |want|; the message names the first
/// mismatch and the worst error.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(err <= tol)`: NaN counts as bad
pub fn assert_close(name: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length {} vs {}", got.len(), want.len());
    let mut first = None;
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let err = (g - w).abs();
        let bad = !(err <= atol + rtol * w.abs()); // NaN counts as bad
        if bad && first.is_none() {
            first = Some((i, g, w));
        }
        if err > worst.0 || err.is_nan() {
            worst = (err, i);
        }
    }
    if let Some((i, g, w)) = first {
        panic!(
            "{name}: mismatch at {i}: got {g}, want {w} (atol {atol:e}, rtol {rtol:e}); worst error {:e} at {}",
            worst.0, worst.1
        );
    }
}

/// f64 -> f32 copy.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Central finite-difference gradient of the scalar `loss` at `x`.
pub fn numeric_grad(x: &[f64], h: f64, mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + h;
            let up = loss(&xp);
            xp[i] = orig - h;
            let down = loss(&xp);
            xp[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Asserts an analytic gradient matches the numeric one (f64, so the bound is tight).
pub fn assert_grad(name: &str, analytic: &[f64], numeric: &[f64]) {
    let scale = numeric.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!((a - n).abs() <= 1e-6 * scale, "{name}[{i}]: analytic {a}, numeric {n} (scale {scale})");
    }
}

/// sum(out * w): a scalar loss whose gradient w.r.t. out is w.
pub fn dot(out: &[f64], w: &[f64]) -> f64 {
    out.iter().zip(w).map(|(a, b)| a * b).sum()
}

/// Random values in [-1, 1) for every f32 input and parameter of `g`; zeros elsewhere.
pub fn random_values(g: &wgformer::graph::Graph, seed: u64) -> Vec<Vec<f32>> {
    use wgformer::graph::{Dtype, Role};
    let mut rng = Rng::new(seed);
    g.tensors
        .iter()
        .map(|t| {
            if t.role != Role::Activation && t.dtype == Dtype::F32 {
                rng.vec_f32(t.len(), 1.0)
            } else {
                vec![0.0; t.len()]
            }
        })
        .collect()
}

/// The f16 forms an elementwise family's tests run where the adapter has f16: (x, the output,
/// dy) each f16 or not, as mixed precision's graph rewrite may ask; all f32 first.
pub const HALF_FORMS: [[bool; 3]; 4] =
    [[false, false, false], [true, false, false], [false, true, true], [true, true, true]];

/// `v` rounded to f16 where `half`: the values an f16 tensor holds.
pub fn fit(v: Vec<f32>, half: bool) -> Vec<f32> {
    if half {
        wgformer::reference::cast::round_f16(&v)
    } else {
        v
    }
}

/// `data` as an f16 tensor where `half`, else f32.
pub fn upload(gpu: &Gpu, name: &str, data: &[f32], half: bool) -> wgformer::gpu::Tensor {
    if half { gpu.upload_f16(name, data) } else { gpu.upload(name, data) }.unwrap()
}
