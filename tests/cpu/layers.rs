//! The library's modules only look down (ARCHITECTURE.md): a source scan of `crate::` and
//! `super::` paths in src/. Top-level modules import only from lower layers; inside a module,
//! sibling submodules never import each other in a cycle. The CLI (main.rs, cli/) sits on top
//! and is not scanned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and its layer, bottom up; the same order as in lib.rs.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("settings", 1),
    ("shaders", 1),
    ("util", 1),
    ("data", 2),
    ("dist", 2),
    ("graph", 2),
    ("text", 2),
    ("gpu", 3),
    ("reference", 3),
    ("kernels", 4),
    ("runtime", 5),
    ("models", 6),
    ("bench", 7),
    ("info", 7),
    ("train", 7),
    ("verify", 7),
];

type ModPath = Vec<String>;

/// Every library source file with its module path (`src/engine/exec/mod.rs` -> runtime::exec).
fn sources(dir: &Path, prefix: &[String], out: &mut Vec<(ModPath, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("src is readable").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if prefix.is_empty() && (name == "main" || name == "cli" || name == "lib") {
            continue;
        }
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            sources(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut p = prefix.to_vec();
            if name != "mod" {
                p.push(name);
            }
            out.push((p, std::fs::read_to_string(&path).expect("source is readable")));
        }
    }
}

/// The paths a source refers to, as module paths (before truncation to a known module).
fn references(module: &ModPath, text: &str) -> Vec<ModPath> {
    let mut refs = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (marker, base) in [("crate::", Vec::new()), ("super::", module[..module.len() - 1].to_vec())] {
            let mut rest = code;
            while let Some(at) = rest.find(marker) {
                let before = rest[..at].chars().last();
                rest = &rest[at + marker.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let mut path = base.clone();
                path.extend(
                    rest.split("::")
                        .map(|seg| seg.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
                        .take_while(|seg| !seg.is_empty()),
                );
                refs.push(path);
            }
        }
    }
    refs
}

#[test]
fn modules_import_only_downward_and_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &[], &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
    let rank: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    // Edges between siblings, by parent: parent -> (from child -> to children).
    let mut siblings: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, text) in &files {
        let top = &module[0];
        if !rank.contains_key(top.as_str()) {
            problems.push(format!("src/{} is not in a layer: add it to LAYERS and ARCHITECTURE.md", module.join("/")));
            continue;
        }
        for mut target in references(module, text) {
            // The longest prefix that is a module: `crate::graph::params::MatmulShape` -> graph::params.
            while !target.is_empty() && !modules.contains(&target) {
                target.pop();
            }
            if target.is_empty() {
                continue;
            }
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == module.len() || common == target.len() {
                continue; // a module and its own submodules
            }
            let (from, to) = (&module[common], &target[common]);
            if common == 0 {
                let (rf, rt) = (rank[from.as_str()], rank.get(to.as_str()).copied().unwrap_or(u32::MAX));
                if rt >= rf {
                    problems.push(format!(
                        "{} (layer {rf}) imports {} (layer {rt}): only lower layers may be imported",
                        module.join("::"),
                        target.join("::")
                    ));
                }
            } else {
                siblings
                    .entry(module[..common].to_vec())
                    .or_default()
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone());
            }
        }
    }
    for (parent, edges) in &siblings {
        if let Some(cycle) = find_cycle(edges) {
            problems.push(format!("import cycle inside {}: {}", parent.join("::"), cycle.join(" -> ")));
        }
    }
    assert!(problems.is_empty(), "layering broken:\n  {}", problems.join("\n  "));
}

/// A cycle in a directed graph, as the list of its nodes (first repeated at the end).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let edge = |pairs: &[(&str, &str)]| {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry(a.to_string()).or_default().insert(b.to_string());
        }
        e
    };
    assert_eq!(find_cycle(&edge(&[("a", "b"), ("b", "c"), ("c", "a")])).map(|c| c.len()), Some(4));
    assert_eq!(find_cycle(&edge(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
}

/// Every Rust source under `dir`, with its path relative to src/.
fn all_sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("src is readable").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            all_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
            let name = path.strip_prefix(&src).unwrap_or(&path).display().to_string();
            out.push((name, std::fs::read_to_string(&path).expect("source is readable")));
        }
    }
}

/// The environment is read in one place, `src/settings.rs`, at the program's edge; everything
/// else gets its settings passed in (the CLI included).
#[test]
fn only_the_settings_module_reads_the_environment() {
    let mut files = Vec::new();
    all_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let problems: Vec<String> = files
        .iter()
        .filter(|(name, _)| name != "settings.rs")
        .flat_map(|(name, text)| {
            text.lines().enumerate().filter_map(move |(i, line)| {
                let code = line.split("//").next().unwrap_or_default();
                code.contains("env::").then(|| format!("src/{name}:{}: {}", i + 1, line.trim()))
            })
        })
        .collect();
    assert!(problems.is_empty(), "environment read outside src/settings.rs:\n  {}", problems.join("\n  "));
}

/// Where the library talks to wgpu directly: `gpu/` (the device, tensors, submits), `kernels/`
/// (pipelines and dispatches) and the executor (`runtime/exec/`, which records a step's passes
/// and owns its readback buffers); `lib.rs` re-exports it for apps. Everything else goes
/// through them. The CLI is not the library and is not scanned.
#[test]
fn only_gpu_kernels_and_the_executor_use_wgpu() {
    const ALLOWED: &[&str] = &["gpu/", "kernels/", "runtime/exec/", "lib.rs"];
    let mut files = Vec::new();
    all_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let problems: Vec<String> = files
        .iter()
        .filter(|(name, _)| !name.starts_with("cli/") && name != "main.rs")
        .filter(|(name, _)| !ALLOWED.iter().any(|a| name.starts_with(a)))
        .flat_map(|(name, text)| {
            text.lines().enumerate().filter_map(move |(i, line)| {
                let code = line.split("//").next().unwrap_or_default();
                code.contains("wgpu::").then(|| format!("src/{name}:{}: {}", i + 1, line.trim()))
            })
        })
        .collect();
    assert!(problems.is_empty(), "wgpu used outside {ALLOWED:?}:\n  {}", problems.join("\n  "));
}

/// Training lives in the library (`train/`): the CLI parses, renders events and calls it. It
/// never names the trainer, the executor or the checkpoint writers.
#[test]
fn the_cli_holds_no_training_logic() {
    const TRAINING: &[&str] = &[
        "Trainer",
        "Executor",
        "ckpt::save",
        "checkpoint::save",
        "params_bytes",
        "moments_bytes",
        "write_dir_atomic",
        "save_run",
    ];
    let mut files = Vec::new();
    all_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let problems: Vec<String> = files
        .iter()
        .filter(|(name, _)| name.starts_with("cli/") || name == "main.rs")
        .flat_map(|(name, text)| {
            text.lines().enumerate().filter_map(move |(i, line)| {
                let code = line.split("//").next().unwrap_or_default();
                TRAINING.iter().any(|t| code.contains(t)).then(|| format!("src/{name}:{}: {}", i + 1, line.trim()))
            })
        })
        .collect();
    assert!(problems.is_empty(), "training logic in the CLI:\n  {}", problems.join("\n  "));
}
