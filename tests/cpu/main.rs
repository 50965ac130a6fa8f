//! The tests that need no GPU: layering and where the environment and wgpu are read, the CPU
//! references against finite differences (ops and whole graphs), shader validation, and the
//! fuzz corpus replayed through every parser.

#[path = "../common/mod.rs"]
mod common;

mod chain_fusion;
mod docs;
mod fuzz_corpus;
mod graph_gradcheck;
mod layers;
mod marian_tokenizer;
mod reference_gradcheck;
mod sentencepiece;
mod shaders_registers;
mod shaders_validate;
mod torch_pickle;
