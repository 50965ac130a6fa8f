//! The reference cases made with PyTorch and Hugging Face transformers (tests/golden): logits,
//! loss and every gradient of the Transformer and the ViT.

#[path = "../common/mod.rs"]
mod common;

mod golden_marian;
mod golden_transformer;
mod golden_vit;
mod marian_generate;
