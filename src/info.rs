//! What `wgformer info` reports: the adapters, the chosen one, its features and limits.

use crate::gpu::{AdapterSummary, Gpu};
use serde::Serialize;

/// The full `info` report.
#[derive(Serialize, Debug, Clone)]
pub struct InfoReport {
    pub adapters: Vec<AdapterSummary>,
    pub chosen: AdapterSummary,
    pub f16: bool,
    pub subgroups: bool,
    pub subgroup_size: [u32; 2],
    pub timestamps: bool,
    /// Cooperative-matrix configurations (M x N x K, input -> accumulator types), and how
    /// products run in mixed precision (`--precision f16`).
    pub coop_matrix: Vec<String>,
    pub matmul_f16: String,
    /// How models built here compute attention (`kernels::attention::policy`).
    pub attention: String,
    /// How kernel choices are made: measured or by rule, and the cache (`kernels::tuning::summary`).
    pub tuning: String,
    pub limits: Vec<(String, u64)>,
}

/// Builds the report for `gpu` among `adapters`.
pub fn report(adapters: &[AdapterSummary], gpu: &Gpu) -> crate::error::Result<InfoReport> {
    let l = &gpu.limits;
    let limits = [
        ("max_storage_buffer_binding_size", l.max_storage_buffer_binding_size),
        ("max_buffer_size", l.max_buffer_size),
        ("max_storage_buffers_per_shader_stage", l.max_storage_buffers_per_shader_stage as u64),
        ("max_compute_workgroup_storage_size", l.max_compute_workgroup_storage_size as u64),
        ("max_compute_invocations_per_workgroup", l.max_compute_invocations_per_workgroup as u64),
        ("max_compute_workgroup_size_x", l.max_compute_workgroup_size_x as u64),
        ("max_compute_workgroup_size_y", l.max_compute_workgroup_size_y as u64),
        ("max_compute_workgroups_per_dimension", l.max_compute_workgroups_per_dimension as u64),
        ("min_storage_buffer_offset_alignment", l.min_storage_buffer_offset_alignment as u64),
    ];
    let fused = crate::kernels::attention::Attention::new(gpu)?.describe_choice();
    let policy = crate::runtime::attention_choice::describe(gpu)?;
    let attention = format!("{policy}; fused variant: {fused}");
    Ok(InfoReport {
        adapters: adapters.to_vec(),
        chosen: AdapterSummary::of(&gpu.info),
        f16: gpu.caps.f16,
        subgroups: gpu.caps.subgroups,
        subgroup_size: [gpu.caps.subgroup_size.0, gpu.caps.subgroup_size.1],
        timestamps: gpu.caps.timestamps,
        coop_matrix: gpu
            .caps
            .coop_matrix
            .iter()
            .map(|p| {
                format!("{}x{}x{} {:?} -> {:?}", p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type).to_lowercase()
            })
            .collect(),
        matmul_f16: match crate::kernels::F16Set::of(gpu) {
            Ok(set) => set.describe(),
            Err(e) => format!("none ({e})"),
        },
        attention,
        tuning: crate::kernels::tuning::summary(gpu),
        limits: limits.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    })
}

/// The report as aligned text.
pub fn report_text(r: &InfoReport) -> String {
    let mut s = String::from("adapters:\n");
    for a in &r.adapters {
        s += &format!("  {} ({}, {}) driver: {} {}\n", a.name, a.backend, a.device_type, a.driver, a.driver_info);
    }
    let c = &r.chosen;
    s += &format!("chosen: {} ({}, {})\n", c.name, c.backend, c.device_type);
    s += &format!("  driver: {} {}\n", c.driver, c.driver_info);
    s += &format!(
        "  f16: {}  subgroups: {} (size {}..{})  timestamps: {}\n",
        r.f16, r.subgroups, r.subgroup_size[0], r.subgroup_size[1], r.timestamps
    );
    let coop = if r.coop_matrix.is_empty() { "none".to_string() } else { r.coop_matrix.join(", ") };
    s += &format!("  cooperative matrices: {coop}; mixed-precision products: {}\n", r.matmul_f16);
    s += &format!("  attention: {}\n", r.attention);
    s += &format!("  kernel choices: {}\n", r.tuning);
    s += "limits:\n";
    for (k, v) in &r.limits {
        s += &format!("  {k:<40} {v}\n");
    }
    s
}
