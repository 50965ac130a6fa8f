//! What an opened device can do, as far as wgformer's kernels care.

/// What the opened device can do, as far as wgformer's kernels care.
#[derive(Clone, Debug)]
pub struct Caps {
    /// `f16` storage and arithmetic in shaders.
    pub f16: bool,
    /// Subgroup operations (and the adapter's subgroup size range).
    pub subgroups: bool,
    /// GPU timestamp queries (used by `bench`).
    pub timestamps: bool,
    /// Timestamp writes inside passes are allowed.
    pub timestamps_inside_passes: bool,
    /// Smallest and largest subgroup size the adapter reports.
    pub subgroup_size: (u32, u32),
    /// The cooperative-matrix configurations (matrix units: tensor cores, simdgroup matrices,
    /// WMMA) the device was opened with; empty where it has none or they were not asked for.
    pub coop_matrix: Vec<wgpu::CooperativeMatrixProperties>,
}

impl Caps {
    /// True when 16x16x16 products of f16 matrices accumulating in f32 run on matrix units
    /// (what `shaders/matmul_coop.wgsl` uses).
    pub fn coop_f16_16(&self) -> bool {
        self.coop_matrix.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    }
}
