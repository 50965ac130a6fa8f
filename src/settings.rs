//! Every setting wgformer takes from the environment, read in one place.
//!
//! The program's edge (the CLI, tests, benches, an app that wants them) calls
//! [`Settings::from_env`] once and passes the result in, usually through
//! [`GpuOptions`](crate::GpuOptions), so that the `Gpu` carries it to the kernels. Nothing else
//! in the library reads the environment (`tests/cpu/layers.rs` holds that). [`Settings::default`]
//! reads nothing: the adapter's own rules, no tuning cache file.
//!
//! One parser per variable; a value that does not parse is an [`Error::InvalidSetting`](crate::Error::InvalidSetting)
//! naming the variable. [`VARIABLES`] lists them all (the guide documents each, and a test
//! keeps the two lists equal).

use crate::error::Result;
use std::path::PathBuf;

mod parse;
use parse::{
    flag, invalid, parse_attention, parse_block, parse_budget, parse_buffers, parse_f16_products, parse_matmul_kernel,
    parse_splits, parse_strip, parse_tiles, parse_tune, parse_weight_casts,
};

/// Every `WGFORMER_*` variable this module parses, in the order of the guide.
pub const VARIABLES: &[&str] = &[
    "WGFORMER_BACKEND",
    "WGFORMER_ADAPTER",
    "WGFORMER_MATMUL_TILES",
    "WGFORMER_MATMUL_VARIANT",
    "WGFORMER_MATMUL_BLOCK",
    "WGFORMER_MATMUL_STRIP",
    "WGFORMER_MATMUL_BUFFERS",
    "WGFORMER_MATMUL_SPLITS",
    "WGFORMER_MATMUL_F16",
    "WGFORMER_F16_WEIGHT_CASTS",
    "WGFORMER_COOP",
    "WGFORMER_ATTENTION_VARIANT",
    "WGFORMER_BOUNDS_CHECKS",
    "WGFORMER_FUSION",
    "WGFORMER_TUNE",
    "WGFORMER_TUNE_BUDGET_MS",
    "WGFORMER_TUNE_CACHE",
    "WGFORMER_PROFILE",
    "WGFORMER_TEST_BACKENDS",
    "WGFORMER_ALLOW_NO_GPU",
    "WGFORMER_REQUIRE_COOP",
    "WGFORMER_STRESS_ROUNDS",
    "WGFORMER_FUZZ_CASES",
    "WGFORMER_FUZZ_LAST",
];

/// A graphics API wgpu can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl Backend {
    /// `vulkan`, `metal`, `dx12` or `gl` (and the usual aliases), as `WGFORMER_BACKEND` takes.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Ok(Backend::Vulkan),
            "metal" | "mtl" => Ok(Backend::Metal),
            "dx12" | "d3d12" => Ok(Backend::Dx12),
            "gl" | "gles" | "opengl" => Ok(Backend::Gl),
            _ => Err(invalid("WGFORMER_BACKEND", name, "one of vulkan, metal, dx12, gl")),
        }
    }
}

/// The most specialised f32 matmul kernel to use (`WGFORMER_MATMUL_VARIANT`); each falls back
/// to the ones before it where a shape or the adapter needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatmulKernel {
    General,
    Vec4,
    Subgroup,
    Tiled,
}

/// How mixed-precision products run (`WGFORMER_MATMUL_F16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F16Products {
    /// f16 operands, the workgroup-memory f16 kernel.
    Tiled,
    /// f16 operands on matrix units (cooperative matrices).
    Coop,
    /// Operands rounded to f16 values kept in f32, the f32 kernels.
    Rounded,
}

/// How attention is computed, when asked for instead of chosen (`WGFORMER_ATTENTION_VARIANT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Matmul, scale, mask, softmax, matmul as separate ops.
    Composed,
    /// The fused kernel, one row per invocation.
    Rows,
    /// The fused kernel sharing rows through subgroups.
    Subgroup,
    /// The fused kernel staging tiles in workgroup memory.
    Tiled,
}

impl AttentionKernel {
    /// The name `WGFORMER_ATTENTION_VARIANT` takes.
    pub fn name(self) -> &'static str {
        match self {
            AttentionKernel::Composed => "composed",
            AttentionKernel::Rows => "rows",
            AttentionKernel::Subgroup => "subgroup",
            AttentionKernel::Tiled => "tiled",
        }
    }
}

/// Register tiles of the register-tile matmul: invocations along N and M, rows per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSizes {
    pub wg_n: u32,
    pub wg_m: u32,
    pub tm: u32,
}

/// Kernel choices asked for instead of the adapter's rules (tuning, comparisons, fallback tests).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSettings {
    /// `WGFORMER_MATMUL_TILES=wg_n,wg_m,tm`.
    pub matmul_tiles: Option<TileSizes>,
    /// `WGFORMER_MATMUL_VARIANT`: the most specialised matmul kernel.
    pub matmul_kernel: Option<MatmulKernel>,
    /// `WGFORMER_MATMUL_BLOCK=TM,TN`: rows and columns per invocation of the tiled matmul.
    pub matmul_block: Option<(u32, u32)>,
    /// `WGFORMER_MATMUL_STRIP=8|16`: k per workgroup-memory strip of the tiled matmul.
    pub matmul_strip: Option<u32>,
    /// `WGFORMER_MATMUL_BUFFERS=1|2`: strips of the tiled matmul held at once (2: double-buffered).
    pub matmul_buffers: Option<u32>,
    /// `WGFORMER_MATMUL_SPLITS=N`: split-K in N splits for every product of the tiled matmul
    /// (1: never), instead of the rule.
    pub matmul_splits: Option<u32>,
    /// `WGFORMER_MATMUL_F16`.
    pub f16_products: Option<F16Products>,
    /// `WGFORMER_F16_WEIGHT_CASTS=per-product|once`.
    pub f16_weight_casts: F16WeightCasts,
    /// `WGFORMER_COOP` (default on): open devices with cooperative matrices where listed.
    pub coop: bool,
    /// `WGFORMER_ATTENTION_VARIANT`.
    pub attention: Option<AttentionKernel>,
    /// `WGFORMER_BOUNDS_CHECKS=1`: keep wgpu's shader bounds checks everywhere.
    pub bounds_checks: bool,
    /// `WGFORMER_FUSION` (default on; `0` off): executors run fused graphs (`graph::fuse`).
    pub fusion: bool,
}

impl Default for KernelSettings {
    fn default() -> Self {
        KernelSettings {
            matmul_tiles: None,
            matmul_kernel: None,
            matmul_block: None,
            matmul_strip: None,
            matmul_buffers: None,
            matmul_splits: None,
            f16_products: None,
            f16_weight_casts: F16WeightCasts::default(),
            coop: true,
            attention: None,
            bounds_checks: false,
            fusion: true,
        }
    }
}

/// How often mixed precision casts a parameter that products read to f16
/// (`WGFORMER_F16_WEIGHT_CASTS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum F16WeightCasts {
    /// A short-lived copy before each product that reads it (a weight: forward and input
    /// gradient): no f16 copy outlives its product.
    #[default]
    PerProduct,
    /// One copy per step, kept from the first product that reads it to the last (as PyTorch's
    /// autocast caches weight casts): fewer casts, up to half the parameters' bytes more memory.
    OncePerStep,
}

/// Which kernel choices are measured (`WGFORMER_TUNE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TuneMode {
    /// The matmul everywhere, attention on GPUs.
    #[default]
    Default,
    /// Nothing: the hand-made rules.
    Off,
    /// Every family on every adapter.
    All,
}

/// How kernel choices are measured and kept.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneSettings {
    /// `WGFORMER_TUNE`.
    pub mode: TuneMode,
    /// `WGFORMER_TUNE_BUDGET_MS`: the most a `Gpu` spends measuring.
    pub budget_ms: f64,
    /// The cache file of measured choices (`WGFORMER_TUNE_CACHE`, else the platform's cache
    /// folder); `None` keeps them in memory only.
    pub cache: Option<PathBuf>,
}

impl Default for TuneSettings {
    fn default() -> Self {
        TuneSettings { mode: TuneMode::Default, budget_ms: 800.0, cache: None }
    }
}

/// Everything the environment can set, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// `WGFORMER_BACKEND`: use only this backend.
    pub backend: Option<Backend>,
    /// `WGFORMER_ADAPTER`: the adapter whose name contains this text.
    pub adapter: Option<String>,
    pub kernels: KernelSettings,
    pub tuning: TuneSettings,
    /// `WGFORMER_PROFILE=1`: `bench step` times each node alone.
    pub profile: bool,
}

impl Settings {
    /// Reads every variable of [`VARIABLES`] that configures the library (the test ones are
    /// [`TestSettings`]'), and the operating system's cache folder for the tuning cache.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// The same from any source of variables (tests give a map).
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let kernels = KernelSettings {
            matmul_tiles: get("WGFORMER_MATMUL_TILES").map(|v| parse_tiles(&v)).transpose()?,
            matmul_kernel: get("WGFORMER_MATMUL_VARIANT").map(|v| parse_matmul_kernel(&v)).transpose()?,
            matmul_block: get("WGFORMER_MATMUL_BLOCK").map(|v| parse_block(&v)).transpose()?,
            matmul_strip: get("WGFORMER_MATMUL_STRIP").map(|v| parse_strip(&v)).transpose()?,
            matmul_buffers: get("WGFORMER_MATMUL_BUFFERS").map(|v| parse_buffers(&v)).transpose()?,
            matmul_splits: get("WGFORMER_MATMUL_SPLITS").map(|v| parse_splits(&v)).transpose()?,
            f16_products: get("WGFORMER_MATMUL_F16").map(|v| parse_f16_products(&v)).transpose()?,
            f16_weight_casts: get("WGFORMER_F16_WEIGHT_CASTS")
                .map(|v| parse_weight_casts(&v))
                .transpose()?
                .unwrap_or_default(),
            coop: get("WGFORMER_COOP").is_none_or(|v| v.trim() != "0"),
            attention: get("WGFORMER_ATTENTION_VARIANT").map(|v| parse_attention(&v)).transpose()?,
            bounds_checks: flag(get("WGFORMER_BOUNDS_CHECKS")),
            fusion: get("WGFORMER_FUSION").is_none_or(|v| v.trim() != "0"),
        };
        let tuning = TuneSettings {
            mode: get("WGFORMER_TUNE").map(|v| parse_tune(&v)).transpose()?.unwrap_or_default(),
            budget_ms: get("WGFORMER_TUNE_BUDGET_MS").map(|v| parse_budget(&v)).transpose()?.unwrap_or(800.0),
            cache: match get("WGFORMER_TUNE_CACHE") {
                Some(v) if v.trim() == "off" => None,
                Some(path) => Some(PathBuf::from(path)),
                None => platform_cache_dir(var).map(|d| d.join("wgformer").join("tuning.json")),
            },
        };
        Ok(Settings {
            backend: get("WGFORMER_BACKEND").map(|v| Backend::parse(&v)).transpose()?,
            adapter: get("WGFORMER_ADAPTER"),
            kernels,
            tuning,
            profile: flag(get("WGFORMER_PROFILE")),
        })
    }
}

/// Settings only the test suites read.
#[derive(Clone, Debug, PartialEq)]
pub struct TestSettings {
    /// `WGFORMER_TEST_BACKENDS` (default vulkan and GL): the backends GPU tests run on.
    pub backends: Vec<Backend>,
    /// `WGFORMER_ALLOW_NO_GPU=1`: GPU tests skip, instead of failing, without an adapter.
    pub allow_no_gpu: bool,
    /// `WGFORMER_REQUIRE_COOP=1`: cooperative-matrix tests fail instead of skipping.
    pub require_coop: bool,
    /// `WGFORMER_STRESS_ROUNDS` (default 3): rounds of the shared-device stress test.
    pub stress_rounds: usize,
    /// `WGFORMER_FUZZ_CASES` (default 3000): random inputs per loader in the corpus replay.
    pub fuzz_cases: usize,
    /// `WGFORMER_FUZZ_LAST`: a folder where the corpus replay writes each input before
    /// parsing it (to find the one that hangs).
    pub fuzz_last: Option<PathBuf>,
}

impl TestSettings {
    /// Reads the test variables.
    pub fn from_env() -> Result<Self> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let backends = match get("WGFORMER_TEST_BACKENDS") {
            Some(list) => {
                list.split(',').filter(|s| !s.trim().is_empty()).map(Backend::parse).collect::<Result<_>>()?
            }
            None => vec![Backend::Vulkan, Backend::Gl],
        };
        let count = |name: &'static str, default: usize| -> Result<usize> {
            get(name).map_or(Ok(default), |v| v.trim().parse().map_err(|_| invalid(name, &v, "a whole number")))
        };
        Ok(TestSettings {
            backends,
            allow_no_gpu: flag(get("WGFORMER_ALLOW_NO_GPU")),
            require_coop: flag(get("WGFORMER_REQUIRE_COOP")),
            stress_rounds: count("WGFORMER_STRESS_ROUNDS", 3)?,
            fuzz_cases: count("WGFORMER_FUZZ_CASES", 3000)?,
            fuzz_last: get("WGFORMER_FUZZ_LAST").map(PathBuf::from),
        })
    }
}

/// Whether this process was started by an MPI launcher (Open MPI's mpirun, MPICH's Hydra, or
/// a PMIx launcher such as srun): the launchers' own variables.
pub fn mpi_launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some())
}

/// The job's size as an MPI launcher's environment gives it.
pub fn mpi_launcher_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Asks Open MPI to yield while a rank waits in a collective, unless the user set it: the wait
/// runs beside the driver's own threads (measured on 2 cores: steps 25-60% slower spinning).
/// Call before MPI starts.
pub fn prefer_mpi_yield() {
    if std::env::var_os("OMPI_MCA_mpi_yield_when_idle").is_none() {
        std::env::set_var("OMPI_MCA_mpi_yield_when_idle", "1");
    }
}

/// The threads of the CPU sgemm that `bench --compare-blas` runs (matrixmultiply reads
/// `MATMUL_NUM_THREADS` once, when its pool starts): every core unless the user set it.
pub fn cpu_sgemm_threads() -> String {
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("MATMUL_NUM_THREADS", cores.to_string());
    }
    std::env::var("MATMUL_NUM_THREADS").unwrap_or_default()
}

/// The platform's per-user cache folder: `%LOCALAPPDATA%`, `~/Library/Caches`, or
/// `$XDG_CACHE_HOME` (else `~/.cache`).
fn platform_cache_dir(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let path = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if cfg!(windows) {
        path("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        path("HOME").map(|h| h.join("Library/Caches"))
    } else {
        path("XDG_CACHE_HOME").or_else(|| path("HOME").map(|h| h.join(".cache")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(&|name| map.get(name).cloned())
    }

    #[test]
    fn nothing_set_is_the_default_without_a_cache() {
        assert_eq!(with(&[]).unwrap(), Settings::default());
    }

    #[test]
    fn each_variable_parses() {
        let s = with(&[
            ("WGFORMER_BACKEND", "GL"),
            ("WGFORMER_MATMUL_TILES", "8,1,16"),
            ("WGFORMER_MATMUL_BLOCK", "8,4"),
            ("WGFORMER_MATMUL_SPLITS", "4"),
            ("WGFORMER_MATMUL_STRIP", "16"),
            ("WGFORMER_MATMUL_BUFFERS", "2"),
            ("WGFORMER_MATMUL_F16", "rounded"),
            ("WGFORMER_F16_WEIGHT_CASTS", "once"),
            ("WGFORMER_COOP", "0"),
            ("WGFORMER_TUNE", "1"),
            ("WGFORMER_TUNE_BUDGET_MS", "5"),
            ("XDG_CACHE_HOME", "/c"),
        ])
        .unwrap();
        assert_eq!(s.backend, Some(Backend::Gl));
        assert_eq!(s.kernels.matmul_tiles, Some(TileSizes { wg_n: 8, wg_m: 1, tm: 16 }));
        assert_eq!(s.kernels.matmul_block, Some((8, 4)));
        assert_eq!(s.kernels.matmul_splits, Some(4));
        assert_eq!(s.kernels.matmul_strip, Some(16));
        assert_eq!(s.kernels.matmul_buffers, Some(2));
        assert_eq!(s.kernels.f16_products, Some(F16Products::Rounded));
        assert_eq!(s.kernels.f16_weight_casts, F16WeightCasts::OncePerStep);
        assert!(!s.kernels.coop);
        assert_eq!((s.tuning.mode, s.tuning.budget_ms), (TuneMode::All, 5.0));
        if cfg!(all(unix, not(target_os = "macos"))) {
            assert_eq!(s.tuning.cache, Some(PathBuf::from("/c/wgformer/tuning.json")));
        }
        assert_eq!(with(&[("WGFORMER_TUNE_CACHE", "off"), ("HOME", "/h")]).unwrap().tuning.cache, None);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("WGFORMER_BACKEND", "cuda"),
            ("WGFORMER_MATMUL_TILES", "8,1"),
            ("WGFORMER_MATMUL_BLOCK", "8,6"),
            ("WGFORMER_MATMUL_SPLITS", "65"),
            ("WGFORMER_MATMUL_STRIP", "32"),
            ("WGFORMER_MATMUL_BUFFERS", "3"),
            ("WGFORMER_MATMUL_VARIANT", "fast"),
            ("WGFORMER_MATMUL_F16", "bf16"),
            ("WGFORMER_F16_WEIGHT_CASTS", "twice"),
            ("WGFORMER_ATTENTION_VARIANT", "flash"),
            ("WGFORMER_TUNE", "yes"),
            ("WGFORMER_TUNE_BUDGET_MS", "-1"),
        ] {
            match with(&[(name, value)]) {
                Err(Error::InvalidSetting { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }
}
