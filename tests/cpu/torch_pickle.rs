//! torch.save files read without running their pickle (tests/data/torch/make.py): every
//! tensor of a state dict (tied, offset and transposed views, half, bfloat16, double, int64, a
//! parameter) equals what PyTorch stored; a pickle that calls os.system is refused, naming it;
//! damaged files are errors.

use std::path::Path;
use wgformer::util::io::{read_safetensors, TensorData};
use wgformer::util::torch_pickle;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch").join(name)
}

#[test]
fn a_state_dict_reads_as_pytorch_stored_it() {
    let got = torch_pickle::read(&std::fs::read(data("state_dict.bin")).unwrap(), "state_dict.bin").unwrap();
    let want = read_safetensors(&data("expected.safetensors")).unwrap();
    assert_eq!(got.len(), want.len());
    for w in &want {
        let g = got.iter().find(|g| g.name == w.name).unwrap_or_else(|| panic!("no {}", w.name));
        assert_eq!(g.shape, w.shape, "{}", w.name);
        match (&g.data, &w.data) {
            (TensorData::F32(a), TensorData::F32(b)) => assert_eq!(a, b, "{}", w.name),
            (TensorData::I64(a), TensorData::I64(b)) => assert_eq!(a, b, "{}", w.name),
            (a, b) => panic!("{}: {a:?} against {b:?}", w.name),
        }
    }
}

#[test]
fn a_pickle_that_calls_code_is_refused_and_damage_is_an_error() {
    let e = torch_pickle::read(&std::fs::read(data("evil.bin")).unwrap(), "evil.bin").unwrap_err().to_string();
    assert!(e.contains("refuses to call") && e.contains("system"), "{e}");
    let good = std::fs::read(data("state_dict.bin")).unwrap();
    for cut in [0, 100, good.len() / 2, good.len() - 10] {
        assert!(torch_pickle::read(&good[..cut], "x.bin").is_err(), "cut at {cut}");
    }
    assert!(torch_pickle::read(b"not a zip", "x.bin").is_err());
}
