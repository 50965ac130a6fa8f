//! Choosing an adapter: the options (`GpuOptions`, built from `Settings`), the adapters wgpu
//! finds and their summaries, and which kind is preferred.

use crate::error::Result;
use crate::settings::{Backend, Settings};

/// Which adapter to use, and the settings the kernels follow on it. The default takes the
/// highest-performance adapter on any backend with [`Settings::default`];
/// [`GpuOptions::from_settings`] applies settings read by the program (for instance
/// [`Settings::from_env`]).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Restrict to one backend (`None`: all).
    pub backend: Option<wgpu::Backend>,
    /// Take the first adapter whose name contains this text (case-insensitive).
    pub adapter: Option<String>,
    /// Among the adapters of the best kind (device type and backend), take this one (modulo
    /// their count, in the order the system lists them): one GPU per rank of a machine.
    pub ordinal: Option<usize>,
    /// Kernel choices and tuning, carried by the opened [`Gpu`](super::Gpu).
    pub settings: Settings,
}

impl GpuOptions {
    /// The adapter `settings` name (backend, name) and the settings themselves.
    pub fn from_settings(settings: Settings) -> Self {
        GpuOptions {
            backend: settings.backend.map(wgpu_backend),
            adapter: settings.adapter.clone(),
            ordinal: None,
            settings,
        }
    }

    /// [`GpuOptions::from_settings`] of the environment's settings ([`Settings::from_env`]).
    pub fn from_env() -> Result<Self> {
        Ok(Self::from_settings(Settings::from_env()?))
    }
}

/// wgpu's name for a backend.
pub fn wgpu_backend(backend: Backend) -> wgpu::Backend {
    match backend {
        Backend::Vulkan => wgpu::Backend::Vulkan,
        Backend::Metal => wgpu::Backend::Metal,
        Backend::Dx12 => wgpu::Backend::Dx12,
        Backend::Gl => wgpu::Backend::Gl,
    }
}

/// Parses a backend name as `WGFORMER_BACKEND` takes it.
pub fn parse_backend(name: &str) -> Result<wgpu::Backend> {
    Backend::parse(name).map(wgpu_backend)
}

pub(super) fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle())
}

/// Every adapter wgpu finds, on every backend compiled in.
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    adapters.iter().map(|a| a.get_info()).collect()
}

/// One adapter as `wgformer info` lists it.
#[derive(serde::Serialize, Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterSummary {
    /// The summary of wgpu's description of an adapter.
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }
}

/// [`list_adapters`], summarised.
pub fn adapter_summaries() -> Vec<AdapterSummary> {
    list_adapters().iter().map(AdapterSummary::of).collect()
}

/// Higher is preferred: real GPUs first, then software; native APIs before GL.
pub(super) fn preference(info: &wgpu::AdapterInfo) -> (u32, u32) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 1,
        _ => 0,
    };
    (device, backend)
}
