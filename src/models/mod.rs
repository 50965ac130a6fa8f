//! Model graphs built from the graph ops, with standard parameter names.

pub mod golden;
pub mod transformer;
pub mod transformer_checkpoint;
pub mod transformer_decode;
pub mod transformer_verify;
pub mod vit;
pub mod vit_checkpoint;
pub mod vit_infer;

pub use vit_infer::Vit;
