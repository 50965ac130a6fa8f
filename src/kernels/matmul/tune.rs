//! A measured choice between the tiled kernel's large (8x4) and small (4x4) blocks, per product
//! shape, at first use on GPUs. On an H200 the fixed rule (large blocks only where they make 512
//! workgroups) picked 4x4 for 4096x512x512 and 768x768x1576, where 8x4 ran 17-21% faster, and
//! was right for 512x512x4096 (8x4 25% slower): the number of blocks alone does not decide.
//! Each new shape is timed once (both blocks, median of 3 after a warm-up, on zero operands of
//! its size) and kept for the device's kernels and, between runs, in a cache file per adapter
//! and driver (`WGFORMER_TUNE_CACHE=PATH|off`; default the platform's cache folder; a corrupt
//! file is ignored and rewritten). `WGFORMER_TUNE=0` keeps the rule, `WGFORMER_TUNE=1`
//! measures on CPU adapters too.

use super::{Matmul, MatmulSet, MatmulShape, MatmulVariant};
use crate::error::Result;
use crate::gpu::Gpu;

/// A product as tuned: batch, M, N, K, transposes, bias, accumulation.
pub(super) type TuneKey = (usize, usize, usize, usize, bool, bool, bool, bool);

fn key(s: &MatmulShape) -> TuneKey {
    (s.batch, s.m, s.n, s.k, s.trans_a, s.trans_b, s.bias, s.accumulate)
}

/// Whether block choices are measured here (default: on GPUs, not CPU adapters).
fn enabled(gpu: &Gpu) -> bool {
    match std::env::var("WGFORMER_TUNE").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => !gpu.is_cpu(),
    }
}

impl Matmul {
    /// Both tiled sets, where the adapter runs the tiled kernel with two blocks.
    fn tiled_pair(&self) -> Option<(&MatmulSet, &MatmulSet)> {
        let small = self.small.as_ref()?;
        (self.large.best == MatmulVariant::Tiled
            && small.best == MatmulVariant::Tiled
            && self.large.block != small.block)
            .then_some((&self.large, small))
    }

    /// The pipelines `shape` runs with: measured on first use where tuning is on, else the rule.
    pub(super) fn choose(&self, gpu: &Gpu, shape: &MatmulShape) -> Result<&MatmulSet> {
        let Some((large, small)) = self.tiled_pair().filter(|_| enabled(gpu)) else { return Ok(self.set_for(shape)) };
        self.tune_cache_loaded.get_or_init(|| self.load_cache(gpu));
        if let Some(set) = self.tuned_set(shape) {
            return Ok(set);
        }
        let use_large = match self.measure(gpu, shape, large, small) {
            Ok(faster) => faster,
            // A lost device stays an error; anything else (operands over the adapter's limits,
            // say) keeps the rule.
            Err(e) if e.is_device_lost() => return Err(e),
            Err(_) => std::ptr::eq(self.set_for(shape), large),
        };
        if let Ok(mut tuned) = self.tuned.lock() {
            tuned.insert(key(shape), use_large);
        }
        self.save_cache(gpu);
        Ok(if use_large { large } else { small })
    }

    /// How many product shapes had their block measured (for tests and reports).
    pub fn tuned_shapes(&self) -> usize {
        self.tuned.lock().map_or(0, |t| t.len())
    }

    /// The set measured for `shape`, if it was.
    fn tuned_set(&self, shape: &MatmulShape) -> Option<&MatmulSet> {
        let (large, small) = self.tiled_pair()?;
        let use_large = self.tuned.lock().ok()?.get(&key(shape)).copied()?;
        Some(if use_large { large } else { small })
    }

    /// The set `shape` runs with so far: measured, or the rule's (no measuring).
    pub(super) fn chosen(&self, shape: &MatmulShape) -> &MatmulSet {
        self.tuned_set(shape).unwrap_or_else(|| self.set_for(shape))
    }

    /// Whether the large blocks ran `shape` at least as fast as the small ones.
    fn measure(&self, gpu: &Gpu, shape: &MatmulShape, large: &MatmulSet, small: &MatmulSet) -> Result<bool> {
        let (na, nb, nc) = shape.extents();
        let (a, b, c) = (gpu.zeros("tune.a", na)?, gpu.zeros("tune.b", nb)?, gpu.zeros("tune.c", nc)?);
        let bias = if shape.bias { Some(gpu.zeros("tune.bias", shape.n)?) } else { None };
        let timer = crate::kernels::Timer::new(gpu);
        let mut ms = [0.0; 2];
        for (i, set) in [large, small].into_iter().enumerate() {
            let d = self.fwd_with(gpu, set, &c, &a, &b, bias.as_ref(), shape)?;
            ms[i] = timer.median_ms(gpu, &[d], 3)?;
        }
        Ok(ms[0] <= ms[1])
    }
}

/// The cache file: `WGFORMER_TUNE_CACHE` (a path, or `off`), else the platform's cache folder.
fn cache_path() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    match std::env::var("WGFORMER_TUNE_CACHE").as_deref() {
        Ok("off") => return None,
        Ok(path) if !path.is_empty() => return Some(PathBuf::from(path)),
        _ => {}
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    }?;
    Some(dir.join("wgformer").join("matmul-blocks.json"))
}

/// Whose measurements an entry of the cache holds: the adapter, its driver and this version.
fn adapter_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!("{} | {:?} | {} {} | wgformer {}", i.name, i.backend, i.driver, i.driver_info, env!("CARGO_PKG_VERSION"))
}

fn shape_key(k: &TuneKey) -> String {
    format!("{},{},{},{},{},{},{},{}", k.0, k.1, k.2, k.3, k.4 as u8, k.5 as u8, k.6 as u8, k.7 as u8)
}

fn parse_shape_key(s: &str) -> Option<TuneKey> {
    let v: Vec<usize> = s.split(',').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let &[b, m, n, k, ta, tb, bias, acc] = &v[..] else { return None };
    Some((b, m, n, k, ta == 1, tb == 1, bias == 1, acc == 1))
}

/// The cache file's contents (an empty object when missing or unreadable).
fn read_cache(path: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Default::default(),
    }
}

impl Matmul {
    /// Adds this adapter's cached choices to the measured ones.
    fn load_cache(&self, gpu: &Gpu) {
        let Some(path) = cache_path() else { return };
        let cache = read_cache(&path);
        let Some(serde_json::Value::Object(entries)) = cache.get(&adapter_key(gpu)) else { return };
        if let Ok(mut tuned) = self.tuned.lock() {
            for (shape, large) in entries {
                if let (Some(k), Some(large)) = (parse_shape_key(shape), large.as_bool()) {
                    tuned.entry(k).or_insert(large);
                }
            }
        }
    }

    /// Writes this adapter's choices into the cache (atomically; other adapters' entries kept).
    /// A cache that cannot be written only costs the next run its measurements.
    fn save_cache(&self, gpu: &Gpu) {
        let Some(path) = cache_path() else { return };
        let mut cache = read_cache(&path);
        let Ok(tuned) = self.tuned.lock() else { return };
        let entries = tuned.iter().map(|(k, &large)| (shape_key(k), serde_json::Value::Bool(large))).collect();
        cache.insert(adapter_key(gpu), serde_json::Value::Object(entries));
        drop(tuned);
        let text = serde_json::to_string_pretty(&cache).unwrap_or_default();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::util::io::write_atomic(&path, text.as_bytes());
    }
}

/// How the tiled matmul's block is chosen on `gpu`, in words (`wgformer info`): measured or
/// the rule, and what the cache file holds for this adapter.
pub fn tuning_summary(gpu: &Gpu) -> String {
    if !enabled(gpu) {
        return "fixed rule (WGFORMER_TUNE=0, or a CPU adapter)".into();
    }
    match cache_path() {
        None => "measured per product shape at first use (where the tiled kernel runs); no cache file".into(),
        Some(path) => {
            let cached = match read_cache(&path).get(&adapter_key(gpu)) {
                Some(serde_json::Value::Object(entries)) => entries.len(),
                _ => 0,
            };
            format!("measured per product shape at first use (where the tiled kernel runs); {} holds {cached} for this adapter", path.display())
        }
    }
}
