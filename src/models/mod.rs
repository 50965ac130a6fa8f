//! Model graphs built from the graph ops, with standard parameter names.

pub mod transformer;
pub mod transformer_checkpoint;
pub mod transformer_decode;
pub mod vit;
pub mod vit_checkpoint;
pub mod vit_infer;

pub use vit_infer::Vit;

/// The `model_type` field of a config.json's text, if any.
pub fn model_type(config_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(config_json).ok()?;
    v.get("model_type")?.as_str().map(str::to_string)
}
