//! One function per fuzz target: arbitrary bytes into a parser of outside data. Each must
//! return (an error is fine) without panicking and without allocating without bound. Shared by
//! the cargo-fuzz targets (fuzz/fuzz_targets/) and tests/cpu/fuzz_corpus.rs, which replays the
//! committed corpus (fuzz/corpus/TARGET/) on stable Rust.

use std::path::Path;
use wgformer::models::{transformer, vit, vit_infer};
use wgformer::text::bpe::Bpe;

/// A fuzz target: any bytes in, nothing out.
pub type Target = fn(&[u8]);

/// Every target, by name (the cargo-fuzz target and corpus folder names).
#[allow(dead_code)] // each cargo-fuzz binary calls one target
pub const TARGETS: [(&str, Target); 10] = [
    ("safetensors", safetensors),
    ("vit_config", vit_config),
    ("transformer_config", transformer_config),
    ("tokenizer", tokenizer),
    ("idx", idx),
    ("tsv", tsv),
    ("image", image),
    ("translate_input", translate_input),
    ("sentencepiece", sentencepiece),
    ("torch_pickle", torch_pickle),
];

/// A torch.save zip (pytorch_model.bin): the zip, the pickle machine, the tensor views.
pub fn torch_pickle(data: &[u8]) {
    let _ = wgformer::util::torch_pickle::read(data, "fuzz.bin");
}

/// A SentencePiece model file (protobuf, the character map's trie), then encoding and
/// decoding with it.
pub fn sentencepiece(data: &[u8]) {
    if let Ok(sp) = wgformer::text::sentencepiece::SentencePiece::from_bytes(data, "fuzz.spm") {
        let ids = sp.encode("  Guten Morgen, Welt! Ünïcödé 😀 \t x\u{3000}ｆｕｌｌ ");
        let _ = sp.decode(&ids);
        let _ = sp.decode(&[0, 1, 2, 3, 4, u32::MAX]);
        let _ = sp.decode_pieces(&["\u{2581}a", "<unk>", "b"]);
    }
}

/// A safetensors file: header, dtypes, offsets, then every tensor as f32.
pub fn safetensors(data: &[u8]) {
    let path = Path::new("fuzz.safetensors");
    if let Ok(tensors) = wgformer::util::io::parse_safetensors(data, path) {
        for t in &tensors {
            let _ = t.f32(path);
        }
    }
}

/// A ViT config.json, then the graph it describes (shapes only: no parameter memory).
pub fn vit_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = vit::VitConfig::from_json(text) {
        let _ = vit::build(&cfg, 1, true);
    }
}

/// A Transformer config.json, then the graph it describes.
pub fn transformer_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = transformer::TransformerConfig::from_json(text) {
        let _ = transformer::build(&cfg, 1, 3, 3, true);
    }
}

/// A tokenizer.json, then encoding and decoding with it.
pub fn tokenizer(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(bpe) = Bpe::from_json(text) {
        let ids = bpe.encode("Guten Morgen, Welt! Ünïcödé 😀 \t x");
        let _ = bpe.decode(&ids);
        let _ = bpe.decode(&[0, 1, 2, 3, 4, u32::MAX]);
    }
}

/// IDX data (as inside Fashion-MNIST's files) of 1 and 3 dimensions, and the gzip layer.
pub fn idx(data: &[u8]) {
    let path = Path::new("fuzz-idx");
    let _ = wgformer::data::mnist::parse_idx(path, data, 1);
    let _ = wgformer::data::mnist::parse_idx(path, data, 3);
    if let Ok(bytes) = wgformer::data::mnist::gunzip(data, path) {
        let _ = wgformer::data::mnist::parse_idx(path, &bytes, 3);
    }
}

/// A corpus file of `source<TAB>target` lines.
pub fn tsv(data: &[u8]) {
    let _ = wgformer::text::corpus::parse_tsv(data, Path::new("fuzz.tsv"));
}

/// An image given to `predict`: decoded within limits, then made the Fashion-MNIST ViT's
/// input (grey) and a 3-channel ViT's.
pub fn image(data: &[u8]) {
    let Ok(img) = vit_infer::decode_image(data, Path::new("fuzz-image")) else { return };
    let grey = vit::VitConfig::fashion_mnist();
    let _ = vit_infer::image_pixels(&img, &grey, &vit::Preprocess::default_for(1));
    let rgb = vit::VitConfig { num_channels: 3, ..grey };
    let _ = vit_infer::image_pixels(&img, &rgb, &vit::Preprocess::default_for(3));
}

/// `translate`'s stdin: lines from any bytes, each tokenized as a source.
pub fn translate_input(data: &[u8]) {
    static BPE: std::sync::OnceLock<Bpe> = std::sync::OnceLock::new();
    let bpe = BPE.get_or_init(|| {
        let text = ["das ist ein Haus", "this is a house", "guten Morgen", "good morning"];
        Bpe::learn(text.iter().copied(), 60, 1).expect("learns a tiny vocabulary")
    });
    for line in wgformer::text::input::lines(data).lines {
        let _ = bpe.decode(&bpe.encode(&line));
    }
}
