//! Every kernel against the CPU reference on every test backend (Vulkan and GL by default),
//! the device itself (errors, limits, a lost device, info), measured kernel choices, and
//! threads sharing one device.

#[path = "../common/mod.rs"]
mod common;

mod gpu;
mod kernels_attention;
mod kernels_chain;
mod kernels_elementwise;
mod kernels_layout;
mod kernels_matmul;
mod kernels_matmul_extras;
mod kernels_matmul_f16;
mod kernels_rowwise;
mod kernels_training;
mod kernels_tuning;
mod stress_shared_device;
