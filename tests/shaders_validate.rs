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
        if let Err(e) = wgformer::shaders::validate(&file, &source) {
            panic!("{e}");
        }
        let registered = wgformer::shaders::ALL.iter().find(|(name, _)| *name == file);
        assert!(registered.is_some(), "{file} is not listed in shaders::ALL");
        assert_eq!(registered.map(|r| r.1), Some(source.as_str()), "{file}: compiled-in copy differs");
        count += 1;
    }
    assert_eq!(count, wgformer::shaders::ALL.len(), "shaders::ALL lists a file that is not in shaders/");
}

#[test]
fn invalid_wgsl_is_an_error_naming_the_file() {
    let err = wgformer::shaders::validate("broken.wgsl", "fn f( {").unwrap_err();
    assert!(err.to_string().contains("broken.wgsl"), "{err}");
}
