//! Expands `#include "common/NAME.wgsl"` lines in `shaders/*.wgsl` into `$OUT_DIR/shaders/`,
//! which `src/shaders.rs` compiles into the binary: shared WGSL (reductions, attention and
//! matmul bindings) lives once under `shaders/common/`. Nothing else is rewritten, so each
//! expanded file is the WGSL that naga validates and the driver compiles.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("shaders");
    fs::create_dir_all(&out).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed=shaders");
    let dir = Path::new("shaders");
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .expect("shaders/ is readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    names.sort();
    for path in names {
        let text = expand(dir, &path, &mut Vec::new());
        fs::write(out.join(path.file_name().expect("a file name")), text).expect("OUT_DIR is writable");
    }
}

/// `path`'s text with each include replaced by the included file (itself expanded); `stack`
/// holds the files being expanded, so that a cycle stops the build with its chain.
fn expand(dir: &Path, path: &Path, stack: &mut Vec<PathBuf>) -> String {
    if stack.contains(&path.to_path_buf()) {
        panic!("{}: #include cycle through {stack:?}", path.display());
    }
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    stack.push(path.to_path_buf());
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        match line.trim().strip_prefix("#include") {
            Some(rest) => {
                let name = rest.trim().trim_matches('"');
                if name.is_empty() || !name.ends_with(".wgsl") {
                    panic!("{}:{}: expected #include \"common/NAME.wgsl\"", path.display(), i + 1);
                }
                out += &expand(dir, &dir.join(name), stack);
            }
            None => {
                out += line;
                out.push('\n');
            }
        }
    }
    stack.pop();
    out
}
