//! Measured kernel choices, shared by the kernel families that have candidates (the matmul's
//! tiles, the fused attention's variants). A family asks `Choices::get` for a shape class;
//! the first time, it times its candidates on operands of that class (`fastest`) and keeps
//! the winner for the device and, between runs, in one cache file per user (entries per
//! adapter, driver and wgformer version; a corrupt file is ignored and rewritten).
//!
//! Cost is bounded: a `Gpu` spends at most [`budget_ms`] measuring (default 800 ms,
//! `WGFORMER_TUNE_BUDGET_MS`); past it a family keeps its rule for new classes. The settings
//! (`gpu.settings.tuning`): `WGFORMER_TUNE=0` (rules only), `WGFORMER_TUNE=1` (measure every
//! family on every adapter); by default the matmul is measured everywhere (its candidates give
//! bit-identical products) and attention on GPUs only (its variants sum in different orders,
//! and on lavapipe the subgroup kernels won 4-6x in every measurement). The cache file is the
//! settings' (`WGFORMER_TUNE_CACHE=PATH|off`, else the platform's cache folder when the
//! settings come from the environment; none by default).

use super::{Dispatch, Timer};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::settings::TuneMode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The families with measured choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The matmul's tile sets.
    Matmul,
    /// The fused attention's variants.
    Attention,
    /// Attention as the fused op or the composed path (`runtime::attention_choice`).
    AttentionPath,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::Attention => "attention",
            Family::AttentionPath => "attention-path",
        }
    }
}

/// Whether `family`'s choices are measured on `gpu` (see the module docs). Never in a
/// browser: timing there cannot block, and a page has no cache folder.
pub fn enabled(gpu: &Gpu, family: Family) -> bool {
    if cfg!(target_arch = "wasm32") {
        return false;
    }
    match gpu.settings.tuning.mode {
        TuneMode::Off => false,
        TuneMode::All => true,
        TuneMode::Default => family == Family::Matmul || !gpu.is_cpu(),
    }
}

/// Nanoseconds a device has spent measuring (one per `Gpu`, in its shared state).
#[derive(Default)]
struct Spent(AtomicU64);

fn spent(gpu: &Gpu) -> Option<std::sync::Arc<Spent>> {
    gpu.shared(|_| Ok(Spent::default())).ok()
}

/// The measuring budget of a device, in milliseconds.
pub fn budget_ms(gpu: &Gpu) -> f64 {
    gpu.settings.tuning.budget_ms
}

/// Milliseconds `gpu` has spent measuring so far.
pub fn spent_ms(gpu: &Gpu) -> f64 {
    spent(gpu).map_or(0.0, |s| s.0.load(Ordering::Relaxed) as f64 / 1e6)
}

/// Whether some of the measuring budget is left.
pub(crate) fn budget_left(gpu: &Gpu) -> bool {
    spent_ms(gpu) < budget_ms(gpu)
}

/// A candidate replaces the rule's only when it runs at least this much faster: within noise
/// the rule (tuned by hand on the machines it was measured on) stays.
const MARGIN: f64 = 0.05;

/// Times the candidates (each a group of dispatches on operands of the class), interleaved
/// over 3 rounds after a warm-up of each, and returns the index of the fastest by its best
/// round: the least disturbed by whatever else the machine runs. The rule's pick `rule` is
/// kept unless another beats it by [`MARGIN`]. The time spent, pipeline compiles included, is
/// charged to the budget.
pub(crate) fn fastest(gpu: &Gpu, candidates: &[Vec<Dispatch>], rule: usize) -> Result<usize> {
    let start = Instant::now();
    let outcome = time_interleaved(gpu, candidates);
    charge(gpu, start);
    Ok(pick(&outcome?, rule))
}

/// Adds the time since `start` to what `gpu` has spent measuring.
pub(crate) fn charge(gpu: &Gpu, start: Instant) {
    if let Some(s) = spent(gpu) {
        s.0.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The index of the fastest of `best_ms`, unless it beats the rule's pick `rule` by less than
/// [`MARGIN`].
pub(crate) fn pick(best_ms: &[f64], rule: usize) -> usize {
    let (best, ms) =
        best_ms.iter().enumerate().fold((rule, f64::INFINITY), |b, (i, &ms)| if ms < b.1 { (i, ms) } else { b });
    match best_ms.get(rule) {
        Some(&rule_ms) if ms > rule_ms * (1.0 - MARGIN) => rule,
        _ => best,
    }
}

/// The best of 3 interleaved runs of each candidate, in milliseconds.
fn time_interleaved(gpu: &Gpu, candidates: &[Vec<Dispatch>]) -> Result<Vec<f64>> {
    let timer = Timer::new(gpu);
    for dispatches in candidates {
        timer.time_once(gpu, dispatches)?;
    }
    let mut best = vec![f64::INFINITY; candidates.len()];
    for _ in 0..3 {
        for (i, dispatches) in candidates.iter().enumerate() {
            best[i] = best[i].min(timer.time_once(gpu, dispatches)?);
        }
    }
    Ok(best)
}

/// A family's choices on one device: shape class -> candidate name.
pub(crate) struct Choices {
    family: Family,
    picks: Mutex<HashMap<String, String>>,
    /// Set once the cache file's entries for this adapter were read.
    loaded: OnceLock<()>,
}

impl Choices {
    pub(crate) fn new(family: Family) -> Self {
        Choices { family, picks: Default::default(), loaded: OnceLock::new() }
    }

    /// The pick for `class`, made in this process or read from the cache file.
    pub(crate) fn get(&self, gpu: &Gpu, class: &str) -> Option<String> {
        self.loaded.get_or_init(|| self.load(gpu));
        self.peek(class)
    }

    /// The pick for `class` made so far, without reading the cache file.
    pub(crate) fn peek(&self, class: &str) -> Option<String> {
        self.picks.lock().ok()?.get(class).cloned()
    }

    /// Keeps `pick` for `class`, here and in the cache file.
    pub(crate) fn insert(&self, gpu: &Gpu, class: String, pick: &str) {
        if let Ok(mut picks) = self.picks.lock() {
            picks.insert(class, pick.to_string());
        }
        self.save(gpu);
    }

    /// How many classes have a pick.
    pub(crate) fn len(&self) -> usize {
        self.picks.lock().map_or(0, |p| p.len())
    }

    fn prefix(&self) -> String {
        format!("{} ", self.family.name())
    }

    fn load(&self, gpu: &Gpu) {
        let Some(path) = cache_path(gpu) else { return };
        let cache = read_cache(&path);
        let Some(serde_json::Value::Object(entries)) = cache.get(&adapter_key(gpu)) else { return };
        let prefix = self.prefix();
        if let Ok(mut picks) = self.picks.lock() {
            for (key, pick) in entries {
                if let (Some(class), Some(pick)) = (key.strip_prefix(&prefix), pick.as_str()) {
                    picks.entry(class.to_string()).or_insert_with(|| pick.to_string());
                }
            }
        }
    }

    /// Writes this family's picks into the adapter's entry (atomically; other families' and
    /// adapters' entries kept). A cache that cannot be written only costs the next run its
    /// measurements.
    fn save(&self, gpu: &Gpu) {
        let Some(path) = cache_path(gpu) else { return };
        let mut cache = read_cache(&path);
        let key = adapter_key(gpu);
        let mut entries = match cache.remove(&key) {
            Some(serde_json::Value::Object(entries)) => entries,
            _ => Default::default(),
        };
        let prefix = self.prefix();
        if let Ok(picks) = self.picks.lock() {
            for (class, pick) in picks.iter() {
                entries.insert(format!("{prefix}{class}"), serde_json::Value::String(pick.clone()));
            }
        }
        cache.insert(key, serde_json::Value::Object(entries));
        let text = serde_json::to_string_pretty(&cache).unwrap_or_default();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::util::io::write_atomic(&path, text.as_bytes());
    }
}

/// The cache file the settings name, if any.
pub fn cache_path(gpu: &Gpu) -> Option<std::path::PathBuf> {
    gpu.settings.tuning.cache.clone()
}

/// Whose measurements an entry of the cache holds: the adapter, its driver and this version.
fn adapter_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!("{} | {:?} | {} {} | wgformer {}", i.name, i.backend, i.driver, i.driver_info, env!("CARGO_PKG_VERSION"))
}

/// The cache file's contents (an empty object when missing or unreadable).
fn read_cache(path: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Default::default(),
    }
}

/// The power of two at or above `x` (shape classes).
pub(crate) fn class_size(x: usize) -> usize {
    x.max(1).next_power_of_two()
}

/// The class an attention call is tuned for: head dim, masks, and the power of two at or
/// above B H, Tq and Tk.
pub(crate) fn attention_class(s: &crate::graph::AttentionShape, masked: bool) -> String {
    format!(
        "d{} {}{} bh{} q{} k{}",
        s.head_dim,
        if s.causal { "causal" } else { "full" },
        if masked { " lens" } else { "" },
        class_size(s.batch * s.heads),
        class_size(s.tq),
        class_size(s.tk)
    )
}

/// How kernel choices are made on `gpu`, in words (`wgformer info`): per family measured or
/// by rule, and what the cache file holds for this adapter.
pub fn summary(gpu: &Gpu) -> String {
    let how = |f: Family| if enabled(gpu, f) { "measured" } else { "rule" };
    let mut s = format!(
        "matmul tiles {}, fused attention variant {}, fused or composed attention {}; budget {:.0} ms a device",
        how(Family::Matmul),
        how(Family::Attention),
        how(Family::AttentionPath),
        budget_ms(gpu)
    );
    match cache_path(gpu) {
        None => s += "; no cache file",
        Some(path) => {
            let cached = match read_cache(&path).get(&adapter_key(gpu)) {
                Some(serde_json::Value::Object(entries)) => entries.len(),
                _ => 0,
            };
            s += &format!("; {} holds {cached} for this adapter", path.display());
        }
    }
    s
}
