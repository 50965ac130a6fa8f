//! The WGSL sources, compiled into the binary, and their validation with naga.
//!
//! Every file in `shaders/` is WGSL whose `#include "common/NAME.wgsl"` lines the build script
//! (`build.rs`) replaces with `shaders/common/NAME.wgsl`: what one kernel family shares with
//! another (workgroup reductions, attention's bindings, the matmul's params and loads) is written
//! once. The constants here hold the expanded sources. The one derived form: a family whose tensors
//! mixed precision may keep in half precision declares their element type as `alias X = f32;`
//! and [`with_f16`] makes the form where those aliases are f16 (the families and their aliases
//! are listed in `kernels::f16_forms`).

use crate::error::{Error, Result};

/// (file name, source) of every kernel family.
pub const ALL: &[(&str, &str)] = &[
    ("matmul.wgsl", MATMUL),
    ("matmul_sg.wgsl", MATMUL_SG),
    ("matmul_tiled.wgsl", MATMUL_TILED),
    ("matmul_f16.wgsl", MATMUL_F16),
    ("matmul_coop.wgsl", MATMUL_COOP),
    ("layernorm.wgsl", LAYERNORM),
    ("gelu.wgsl", GELU),
    ("softmax.wgsl", SOFTMAX),
    ("elementwise.wgsl", ELEMENTWISE),
    ("elementwise_chain.wgsl", ELEMENTWISE_CHAIN),
    ("reduce.wgsl", REDUCE),
    ("crossentropy.wgsl", CROSSENTROPY),
    ("adam.wgsl", ADAM),
    ("layout.wgsl", LAYOUT),
    ("dropout.wgsl", DROPOUT),
    ("embedding.wgsl", EMBEDDING),
    ("mask.wgsl", MASK),
    ("clip.wgsl", CLIP),
    ("cast.wgsl", CAST),
    ("attention.wgsl", ATTENTION),
    ("attention_sg.wgsl", ATTENTION_SG),
    ("attention_tiled.wgsl", ATTENTION_TILED),
];

pub const MATMUL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/matmul.wgsl"));
pub const MATMUL_SG: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/matmul_sg.wgsl"));
pub const MATMUL_TILED: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/matmul_tiled.wgsl"));
pub const MATMUL_F16: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/matmul_f16.wgsl"));
pub const MATMUL_COOP: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/matmul_coop.wgsl"));
pub const LAYERNORM: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/layernorm.wgsl"));
pub const GELU: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/gelu.wgsl"));
pub const SOFTMAX: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/softmax.wgsl"));
pub const ELEMENTWISE: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/elementwise.wgsl"));
pub const ELEMENTWISE_CHAIN: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/elementwise_chain.wgsl"));
pub const REDUCE: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/reduce.wgsl"));
pub const CROSSENTROPY: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/crossentropy.wgsl"));
pub const ADAM: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/adam.wgsl"));
pub const LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/layout.wgsl"));
pub const DROPOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/dropout.wgsl"));
pub const EMBEDDING: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/embedding.wgsl"));
pub const MASK: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/mask.wgsl"));
pub const CLIP: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/clip.wgsl"));
pub const CAST: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/cast.wgsl"));
pub const ATTENTION: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/attention.wgsl"));
pub const ATTENTION_SG: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/attention_sg.wgsl"));
pub const ATTENTION_TILED: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/attention_tiled.wgsl"));

/// `source` with each alias of `aliases` (`alias NAME = f32;` or `alias NAME = vec4<f32>;`)
/// made f16, and `enable f16;` first where the source lacks it. An error naming the file where
/// an alias is not declared so.
pub fn with_f16(file: &str, source: &str, aliases: &[&str]) -> Result<String> {
    let mut out = if source.contains("enable f16;") { source.to_string() } else { format!("enable f16;\n{source}") };
    for name in aliases {
        let found = ["f32", "vec4<f32>"].iter().find_map(|ty| {
            let declared = format!("alias {name} = {ty};");
            out.contains(&declared).then(|| (declared.clone(), declared.replace("f32", "f16")))
        });
        let (declared, half) = found.ok_or_else(|| Error::Shader {
            file: file.to_string(),
            message: format!("no `alias {name} = f32;` (or vec4<f32>) to make f16"),
        })?;
        out = out.replace(&declared, &half);
    }
    Ok(out)
}

/// Parses and validates `source` with naga; errors carry the file name and naga's report.
pub fn validate(file: &str, source: &str) -> Result<()> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| Error::Shader { file: file.to_string(), message: e.emit_to_string_with_path(source, file) })?;
    let mut validator =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
    validator
        .validate(&module)
        .map_err(|e| Error::Shader { file: file.to_string(), message: e.emit_to_string_with_path(source, file) })?;
    Ok(())
}
