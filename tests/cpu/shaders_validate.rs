//! Every file in shaders/ parses and validates with naga, without a GPU, and is compiled in.

#[test]
fn every_shader_file_validates_and_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let file = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_string();
        let source = std::fs::read_to_string(&path).expect("readable shader");
        let registered = wgformer::shaders::ALL.iter().find(|(name, _)| *name == file);
        let Some((_, expanded)) = registered else { panic!("{file} is not listed in shaders::ALL") };
        if let Err(e) = wgformer::shaders::validate(&file, expanded) {
            panic!("{e}");
        }
        // The compiled-in copy is the file with each include replaced by the included file.
        assert!(*expanded == expand(&dir, &source), "{file}: the compiled-in copy differs from its expansion");
        count += 1;
    }
    assert_eq!(count, wgformer::shaders::ALL.len(), "shaders::ALL lists a file that is not in shaders/");
}

/// `text` with each `#include "common/NAME.wgsl"` line replaced by that file, itself expanded.
fn expand(dir: &std::path::Path, text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match line.trim().strip_prefix("#include") {
            Some(name) => {
                let included = std::fs::read_to_string(dir.join(name.trim().trim_matches('"'))).expect("included file");
                out += &expand(dir, &included);
            }
            None => {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}

/// Shared WGSL lives once, in shaders/common/ (included by the build script): no run of 8
/// non-blank lines stands in two places of shaders/, and every common file is included.
#[test]
fn no_wgsl_is_written_twice() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("common")] {
        for entry in std::fs::read_dir(&dir).expect("readable folder").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let lines: Vec<String> = std::fs::read_to_string(&path)
                    .expect("readable shader")
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect();
                files.push((path.strip_prefix(&root).unwrap().display().to_string(), lines));
            }
        }
    }
    const RUN: usize = 8;
    let mut first: std::collections::HashMap<&[String], (String, usize)> = Default::default();
    let mut repeats = Vec::new();
    for (name, lines) in &files {
        for (i, run) in lines.windows(RUN).enumerate() {
            match first.get(run) {
                Some((other, j)) if other != name || j + RUN <= i => {
                    repeats.push(format!("{name} (line {}) repeats {other}: {:?}", i + 1, run[0]))
                }
                Some(_) => {}
                None => {
                    first.insert(run, (name.clone(), i));
                }
            }
        }
    }
    assert!(repeats.is_empty(), "WGSL written twice (move it to shaders/common/):\n  {}", repeats.join("\n  "));
    for (name, _) in files.iter().filter(|(n, _)| n.starts_with("common")) {
        let used =
            files.iter().any(|(_, lines)| lines.iter().any(|l| l.starts_with("#include") && l.contains(name.as_str())));
        assert!(used, "{name} is included nowhere");
    }
}

#[test]
fn f16_storage_forms_validate() {
    // Every alias may be f16 on its own (kernels pick the form by their tensors' types), so
    // every subset of a family's aliases is a form.
    for family in wgformer::kernels::f16_forms::F16_FAMILIES {
        let (file, source) = (family.file, family.source);
        let aliases: Vec<&str> = family.aliases.iter().map(|a| a.name).collect();
        for mask in 1..1u32 << aliases.len() {
            let halves: Vec<&str> =
                aliases.iter().enumerate().filter(|(i, _)| mask & 1 << i != 0).map(|(_, a)| *a).collect();
            let form = wgformer::shaders::with_f16(file, source, &halves).unwrap();
            assert_ne!(&form, source, "{file}: the f16 form is the f32 one");
            if let Err(e) = wgformer::shaders::validate(&format!("{file} (f16 {halves:?})"), &form) {
                panic!("{e}");
            }
        }
    }
    let err = wgformer::shaders::with_f16("gelu.wgsl", wgformer::shaders::GELU, &["Missing"]).unwrap_err();
    assert!(err.to_string().contains("alias Missing = f32;"), "{err}");
}

#[test]
fn invalid_wgsl_is_an_error_naming_the_file() {
    let err = wgformer::shaders::validate("broken.wgsl", "fn f( {").unwrap_err();
    assert!(err.to_string().contains("broken.wgsl"), "{err}");
}

/// A uniform struct several kernel families read (matmul's params, attention's) comes from one
/// file of shaders/common/, or, where a family declares its own, must match: the Rust side
/// writes one layout.
#[test]
fn structs_declared_in_several_files_are_identical() {
    let mut seen: std::collections::HashMap<String, (&str, String)> = Default::default();
    let mut shared = 0;
    for (file, source) in wgformer::shaders::ALL {
        let mut rest = *source;
        while let Some(at) = rest.find("\nstruct ") {
            let decl = &rest[at + 1..];
            let end = decl.find('}').expect("struct closes") + 1;
            let name = decl["struct ".len()..].split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("");
            // Compare without whitespace or comments.
            let body: String = decl[..end]
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .flat_map(|l| l.split_whitespace())
                .collect();
            match seen.get(name) {
                Some((first, want)) => {
                    assert_eq!(&body, want, "struct {name} in {file} differs from {first}");
                    shared += 1;
                }
                None => {
                    seen.insert(name.to_string(), (file, body));
                }
            }
            rest = &decl[end..];
        }
    }
    assert!(shared >= 3, "expected the matmul and attention params to be shared, found {shared} copies");
}

/// The f16 and cooperative-matrix matmuls compile to SPIR-V (Vulkan's input) with their
/// pipeline constants set, for every transpose: lavapipe has no matrix units, so on the
/// machines the tests run on this is the furthest matmul_coop.wgsl gets before a GPU runs it.
#[test]
fn f16_and_cooperative_matrix_shaders_compile_to_spirv() {
    for (file, source, entry) in [
        ("matmul_f16.wgsl", wgformer::shaders::MATMUL_F16, "matmul_f16"),
        ("matmul_coop.wgsl", wgformer::shaders::MATMUL_COOP, "matmul_coop"),
    ] {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut validator =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
        let info = validator.validate(&module).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        for trans in 0..4 {
            let mut constants = naga::back::PipelineConstants::default();
            constants.insert("TRANS_A".into(), (trans >> 1) as f64);
            constants.insert("TRANS_B".into(), (trans & 1) as f64);
            if entry == "matmul_coop" {
                constants.insert("SG".into(), 32.0);
            }
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, entry)),
                &constants,
            )
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
            let options = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.into(),
            };
            let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
                .unwrap_or_else(|e| panic!("{file} (transposes {trans}): {e:?}"));
            assert!(words.len() > 100, "{file}: {} words of SPIR-V", words.len());
        }
    }
}
