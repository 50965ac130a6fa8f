//! The docs stay true: the README is a short guide, relative links resolve, the environment
//! variables the settings parse are exactly the documented ones, and no table cell or line is
//! a wall of text.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's docs: README, ARCHITECTURE, CHANGELOG and docs/*.md.
fn docs() -> Vec<(PathBuf, String)> {
    let mut paths: Vec<PathBuf> =
        ["README.md", "ARCHITECTURE.md", "CHANGELOG.md"].iter().map(|p| root().join(p)).collect();
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    paths.extend(more);
    paths.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).expect("readable doc"))).collect()
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn name(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

#[test]
fn the_readme_is_a_short_guide() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(text.lines().count() <= 150, "README.md has {} lines (at most 150)", text.lines().count());
    assert!(text.len() <= 12 * 1024, "README.md has {} bytes (at most 12 KiB)", text.len());
    for line in prose(&text) {
        assert!(line.chars().count() <= 200, "README.md line over 200 characters: {line}");
    }
}

#[test]
fn relative_links_resolve() {
    let mut broken = Vec::new();
    for (path, text) in docs() {
        let dir = path.parent().unwrap().to_path_buf();
        for line in prose(&text) {
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let Some(end) = rest.find(')') else { break };
                let target = rest[..end].split('#').next().unwrap_or_default();
                let external = target.contains("://") || target.starts_with("mailto:");
                if !target.is_empty() && !external && !dir.join(target).exists() {
                    broken.push(format!("{}: {target}", name(&path)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing:\n  {}", broken.join("\n  "));
}

/// The `WGFORMER_*` names a text mentions.
fn variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("WGFORMER_") {
        let tail = &rest[at..];
        let len =
            tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        let name = tail[..len].trim_end_matches('_');
        if name != "WGFORMER" {
            out.push(name.to_string()); // `WGFORMER_*` names them all
        }
        rest = &tail[len..];
    }
    out
}

#[test]
fn documented_variables_are_the_parsed_ones() {
    let parsed = wgformer::settings::VARIABLES;
    let guide = std::fs::read_to_string(root().join("docs/guide.md")).unwrap();
    let documented = variables(&guide);
    for v in parsed {
        assert!(documented.iter().any(|d| d == v), "{v} is parsed but not documented in docs/guide.md");
    }
    for (path, text) in docs() {
        for v in variables(&text) {
            assert!(parsed.contains(&v.as_str()), "{} names {v}, which the settings do not parse", name(&path));
        }
    }
}

#[test]
fn no_walls_of_text_and_no_issue_numbers() {
    for (path, text) in docs() {
        for line in prose(&text) {
            if line.trim_start().starts_with('|') {
                for cell in line.split(" | ") {
                    assert!(cell.chars().count() <= 300, "{}: a table cell over 300 characters: {cell}", name(&path));
                }
            }
            let lower = line.to_ascii_lowercase();
            let numbered = lower.match_indices("issue").any(|(at, _)| {
                let after = lower[at + 5..].trim_start_matches([' ', '#', 's']);
                after.starts_with(|c: char| c.is_ascii_digit())
            });
            assert!(!numbered, "{}: an issue number (the docs stand on their own): {line}", name(&path));
        }
    }
}
