//! Model graphs built from the graph ops, with standard parameter names.

pub mod marian;
pub mod marian_checkpoint;
pub mod marian_generate;
pub mod marian_translator;
pub mod transformer;
pub mod transformer_checkpoint;
pub mod transformer_config;
pub mod transformer_decode;
pub mod translation;
pub mod translator;
pub mod vit;
pub mod vit_checkpoint;
pub mod vit_infer;

pub use vit_infer::Vit;

/// The `model_type` field of a config.json's text, if any.
pub fn model_type(config_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(config_json).ok()?;
    v.get("model_type")?.as_str().map(str::to_string)
}

/// The largest layer count, width, feed-forward width, vocabulary (or class count) and image
/// side a config may ask for: far past any model here, and small enough that no size
/// computation overflows and building a graph never allocates without bound (a config.json
/// claiming 2 * 10^12 layers is refused, not built).
pub const MAX_LAYERS: usize = 1 << 10;
pub const MAX_WIDTH: usize = 1 << 16;
pub const MAX_FFN: usize = 1 << 20;
pub const MAX_VOCAB: usize = 1 << 24;
pub const MAX_IMAGE_SIDE: usize = 1 << 14;

/// `Err` naming the first of (name, value, max) whose value is past its max.
pub(crate) fn check_sizes(sizes: &[(&str, usize, usize)]) -> crate::error::Result<()> {
    match sizes.iter().find(|(_, value, max)| value > max) {
        Some((name, value, max)) => {
            Err(crate::error::Error::Config(format!("{name} {value} is over the limit of {max}")))
        }
        None => Ok(()),
    }
}
