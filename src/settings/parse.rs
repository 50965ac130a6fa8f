//! The parsers of the settings' values: one per variable, each an error naming the variable
//! and what it takes where the value does not parse.

use super::{AttentionKernel, F16Products, F16WeightCasts, MatmulKernel, TileSizes, TuneMode};
use crate::error::{Error, Result};

pub(super) fn invalid(name: &'static str, value: &str, expected: &'static str) -> Error {
    Error::InvalidSetting { name, value: value.to_string(), expected }
}

/// A switch that is on when set to `1`.
pub(super) fn flag(value: Option<String>) -> bool {
    value.is_some_and(|v| v.trim() == "1")
}

/// Comma-separated numbers, exactly `n` of them.
pub(super) fn numbers(name: &'static str, value: &str, n: usize, expected: &'static str) -> Result<Vec<u32>> {
    let parts: Option<Vec<u32>> = value.split(',').map(|p| p.trim().parse().ok()).collect();
    parts.filter(|p| p.len() == n && p.iter().all(|&x| x > 0)).ok_or_else(|| invalid(name, value, expected))
}

pub(super) fn parse_tiles(value: &str) -> Result<TileSizes> {
    let p = numbers("WGFORMER_MATMUL_TILES", value, 3, "three positive numbers wg_n,wg_m,tm")?;
    Ok(TileSizes { wg_n: p[0], wg_m: p[1], tm: p[2] })
}

pub(super) fn parse_block(value: &str) -> Result<(u32, u32)> {
    let p = numbers("WGFORMER_MATMUL_BLOCK", value, 2, "TM,TN, each 4 or 8")?;
    match (p[0], p[1]) {
        (tm @ (4 | 8), tn @ (4 | 8)) => Ok((tm, tn)),
        _ => Err(invalid("WGFORMER_MATMUL_BLOCK", value, "TM,TN, each 4 or 8")),
    }
}

pub(super) fn parse_strip(value: &str) -> Result<u32> {
    match value.trim() {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(invalid("WGFORMER_MATMUL_STRIP", value, "8 or 16")),
    }
}

pub(super) fn parse_buffers(value: &str) -> Result<u32> {
    match value.trim() {
        "1" => Ok(1),
        "2" => Ok(2),
        _ => Err(invalid("WGFORMER_MATMUL_BUFFERS", value, "1 or 2")),
    }
}

pub(super) fn parse_splits(value: &str) -> Result<u32> {
    let p = numbers("WGFORMER_MATMUL_SPLITS", value, 1, "a number of splits, 1 to 64")?;
    match p[0] {
        n @ 1..=64 => Ok(n),
        _ => Err(invalid("WGFORMER_MATMUL_SPLITS", value, "a number of splits, 1 to 64")),
    }
}

pub(super) fn parse_matmul_kernel(value: &str) -> Result<MatmulKernel> {
    match value.trim() {
        "general" => Ok(MatmulKernel::General),
        "vec4" => Ok(MatmulKernel::Vec4),
        "subgroup" => Ok(MatmulKernel::Subgroup),
        "tiled" => Ok(MatmulKernel::Tiled),
        _ => Err(invalid("WGFORMER_MATMUL_VARIANT", value, "general, vec4, subgroup or tiled")),
    }
}

pub(super) fn parse_f16_products(value: &str) -> Result<F16Products> {
    match value.trim() {
        "tiled" => Ok(F16Products::Tiled),
        "coop" => Ok(F16Products::Coop),
        "rounded" => Ok(F16Products::Rounded),
        _ => Err(invalid("WGFORMER_MATMUL_F16", value, "tiled, coop or rounded")),
    }
}

pub(super) fn parse_weight_casts(value: &str) -> Result<F16WeightCasts> {
    match value.trim() {
        "per-product" => Ok(F16WeightCasts::PerProduct),
        "once" => Ok(F16WeightCasts::OncePerStep),
        _ => Err(invalid("WGFORMER_F16_WEIGHT_CASTS", value, "per-product or once")),
    }
}

pub(super) fn parse_attention(value: &str) -> Result<AttentionKernel> {
    match value.trim() {
        "composed" => Ok(AttentionKernel::Composed),
        "rows" => Ok(AttentionKernel::Rows),
        "subgroup" => Ok(AttentionKernel::Subgroup),
        "tiled" => Ok(AttentionKernel::Tiled),
        _ => Err(invalid("WGFORMER_ATTENTION_VARIANT", value, "composed, rows, subgroup or tiled")),
    }
}

pub(super) fn parse_tune(value: &str) -> Result<TuneMode> {
    match value.trim() {
        "0" => Ok(TuneMode::Off),
        "1" => Ok(TuneMode::All),
        _ => Err(invalid("WGFORMER_TUNE", value, "0 (rules only) or 1 (measure everything)")),
    }
}

pub(super) fn parse_budget(value: &str) -> Result<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .ok_or_else(|| invalid("WGFORMER_TUNE_BUDGET_MS", value, "milliseconds, 0 or more"))
}
