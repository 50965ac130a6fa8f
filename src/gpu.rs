//! `Gpu`: adapter choice, device features and limits, tensors on the GPU, readback and
//! error scopes. Everything else talks to wgpu through this file or `kernels/`.

use crate::error::{Error, Result};
use std::borrow::Cow;
use wgpu::util::DeviceExt;

/// Which adapter to use. `GpuOptions::from_env()` reads `WGFORMER_BACKEND` and
/// `WGFORMER_ADAPTER`; the defaults take the highest-performance adapter on any backend.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Restrict to one backend (`None`: all).
    pub backend: Option<wgpu::Backend>,
    /// Take the first adapter whose name contains this text (case-insensitive).
    pub adapter: Option<String>,
}

impl GpuOptions {
    /// Reads `WGFORMER_BACKEND=vulkan|metal|dx12|gl` and `WGFORMER_ADAPTER=<substring>`.
    pub fn from_env() -> Result<Self> {
        let backend = match std::env::var("WGFORMER_BACKEND") {
            Ok(v) if !v.trim().is_empty() => Some(parse_backend(&v)?),
            _ => None,
        };
        let adapter = std::env::var("WGFORMER_ADAPTER").ok().filter(|s| !s.trim().is_empty());
        Ok(GpuOptions { backend, adapter })
    }
}

/// Parses a backend name as used by `WGFORMER_BACKEND`.
pub fn parse_backend(name: &str) -> Result<wgpu::Backend> {
    match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backend::Vulkan),
        "metal" | "mtl" => Ok(wgpu::Backend::Metal),
        "dx12" | "d3d12" => Ok(wgpu::Backend::Dx12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backend::Gl),
        _ => Err(Error::InvalidSetting {
            name: "WGFORMER_BACKEND",
            value: name.to_string(),
            expected: "one of vulkan, metal, dx12, gl",
        }),
    }
}

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
}

/// An opened GPU: adapter info, device, queue, and what they support.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub caps: Caps,
    submits: std::sync::atomic::AtomicU64,
    /// The first GPU error no error scope caught (wgpu's default would panic); reported by
    /// the next [`Gpu::wait`].
    uncaptured: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle())
}

/// Every adapter wgpu finds, on every backend compiled in.
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    adapters.iter().map(|a| a.get_info()).collect()
}

/// Higher is preferred: real GPUs first, then software; native APIs before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u32, u32) {
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

impl Gpu {
    /// Opens the adapter chosen by `WGFORMER_BACKEND` / `WGFORMER_ADAPTER`, or the best one.
    pub fn new() -> Result<Self> {
        Self::with_options(&GpuOptions::from_env()?)
    }

    /// Opens the best adapter that matches `opts` (blocking: native only; in a browser use
    /// [`Gpu::with_options_async`]).
    pub fn with_options(opts: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(opts))
    }

    /// Opens the best adapter that matches `opts`, without blocking (the only way in a browser,
    /// where the page's event loop must run while the adapter and device are created).
    pub async fn with_options_async(opts: &GpuOptions) -> Result<Self> {
        let backends = match opts.backend {
            Some(b) => wgpu::Backends::from(b),
            None => wgpu::Backends::all(),
        };
        let instance = instance();
        let mut adapters = instance.enumerate_adapters(backends).await;
        if adapters.is_empty() && opts.backend.is_none() {
            // A browser may list nothing but still grant its one adapter when asked.
            adapters.extend(instance.request_adapter(&Default::default()).await.ok());
        }
        let wanted = opts.adapter.as_ref().map(|s| s.to_ascii_lowercase());
        let adapter = adapters
            .into_iter()
            .filter(|a| wanted.as_ref().is_none_or(|w| a.get_info().name.to_ascii_lowercase().contains(w)))
            .max_by_key(|a| preference(&a.get_info()))
            .ok_or_else(|| {
                let mut why = String::new();
                if let Some(b) = opts.backend {
                    why += &format!(" for backend {b:?}");
                }
                if let Some(w) = &opts.adapter {
                    why += &format!(" with a name containing {w:?}");
                }
                Error::NoAdapter(why)
            })?;
        Self::from_adapter_async(&adapter).await
    }

    /// Opens a device on `adapter`, with the optional features wgformer uses and the adapter's
    /// real limits (the WebGPU defaults cap storage bindings at 128 MiB and buffers at 256 MiB).
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        pollster::block_on(Self::from_adapter_async(adapter))
    }

    /// [`Gpu::from_adapter`] without blocking.
    pub async fn from_adapter_async(adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let have = adapter.features();
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgformer"),
            required_features: have & wanted,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::RequestDevice(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        Ok(Self::from_device(device, queue, info))
    }

    /// Wraps a device an application already has. wgformer uses whichever of SHADER_F16,
    /// SUBGROUP and TIMESTAMP_QUERY the device was created with.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let f = device.features();
        let caps = Caps {
            f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
        };
        let limits = device.limits();
        let uncaptured: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let sink = uncaptured.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert(e.to_string());
            }
        }));
        Gpu { device, queue, info, limits, caps, submits: Default::default(), uncaptured }
    }

    /// True for software adapters (lavapipe, llvmpipe, WARP, SwiftShader): they want
    /// different kernel shapes than real GPUs.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The most loop iterations one invocation may run in all, where the driver imposes a cap:
    /// Mesa's llvmpipe (lavapipe on Vulkan, and GL) ends an invocation's loops after 65535
    /// iterations summed over every loop, silently. Kernels refuse shapes that would pass it.
    pub fn loop_budget(&self) -> Option<u64> {
        self.info.name.to_ascii_lowercase().contains("llvmpipe").then_some(65_535)
    }

    /// A short description: "name (backend, device type)".
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// Checks that `bytes` fit one storage binding and one buffer on this adapter.
    pub fn check_size(&self, name: &str, bytes: u64) -> Result<()> {
        let binding = self.limits.max_storage_buffer_binding_size;
        if bytes > binding {
            return Err(Error::TooLarge {
                name: name.to_string(),
                bytes,
                limit: "max_storage_buffer_binding_size",
                max: binding,
            });
        }
        if bytes > self.limits.max_buffer_size {
            return Err(Error::TooLarge {
                name: name.to_string(),
                bytes,
                limit: "max_buffer_size",
                max: self.limits.max_buffer_size,
            });
        }
        Ok(())
    }

    fn storage_buffer(&self, name: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_size(name, bytes)?;
        // wgpu rejects zero-sized bindings: keep one element so empty tensors still bind.
        let size = bytes.max(4).next_multiple_of(4);
        // In an error scope: running out of GPU memory becomes an Err naming the tensor.
        self.scoped(name, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A zero-filled f32 tensor of `len` elements.
    pub fn zeros(&self, name: &str, len: usize) -> Result<Tensor> {
        let buffer = self.storage_buffer(name, len as u64 * 4)?;
        Ok(Tensor { buffer, len, dtype: DType::F32 })
    }

    /// An f32 tensor holding `data`.
    pub fn upload(&self, name: &str, data: &[f32]) -> Result<Tensor> {
        let t = self.zeros(name, data.len())?;
        self.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// A u32 tensor (class or token ids) holding `data`.
    pub fn upload_u32(&self, name: &str, data: &[u32]) -> Result<Tensor> {
        let buffer = self.storage_buffer(name, data.len() as u64 * 4)?;
        self.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        Ok(Tensor { buffer, len: data.len(), dtype: DType::U32 })
    }

    /// A zero-filled u32 tensor.
    pub fn zeros_u32(&self, name: &str, len: usize) -> Result<Tensor> {
        Ok(Tensor { buffer: self.storage_buffer(name, len as u64 * 4)?, len, dtype: DType::U32 })
    }

    /// Overwrites a tensor with raw values of its type (same length): f32 or u32 data.
    pub fn write_raw<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) -> Result<()> {
        if std::mem::size_of_val(data) as u64 != t.byte_len() {
            return Err(Error::shape(
                "write",
                format!("{} bytes into a {:?} tensor of {}", std::mem::size_of_val(data), t.dtype, t.len),
            ));
        }
        self.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Overwrites an f32 tensor with `data` (same length).
    pub fn write(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        if t.dtype != DType::F32 || data.len() != t.len {
            return Err(Error::shape(
                "write",
                format!("{} f32 values into a {:?} tensor of {}", data.len(), t.dtype, t.len),
            ));
        }
        self.queue.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// An f16 tensor holding `data` rounded to half precision (needs SHADER_F16 to be used by kernels).
    pub fn upload_f16(&self, name: &str, data: &[f32]) -> Result<Tensor> {
        if !self.caps.f16 {
            return Err(Error::Unsupported { what: "f16 storage (SHADER_F16)", adapter: self.describe() });
        }
        let halves: Vec<half::f16> = data.iter().map(|&x| half::f16::from_f32(x)).collect();
        let mut bytes: Vec<u8> = bytemuck::cast_slice(&halves).to_vec();
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        let buffer = self.storage_buffer(name, bytes.len() as u64)?;
        self.queue.write_buffer(&buffer, 0, &bytes);
        Ok(Tensor { buffer, len: data.len(), dtype: DType::F16 })
    }

    /// Reads a tensor back as f32 (f16 tensors are widened, u32 ids converted). Blocking:
    /// native only; in a browser use [`Gpu::read_async`].
    pub fn read(&self, t: &Tensor) -> Result<Vec<f32>> {
        pollster::block_on(self.read_async(t))
    }

    /// [`Gpu::read`] without blocking.
    pub async fn read_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        let bytes = self.read_bytes_async(&t.buffer, t.byte_len()).await?;
        Ok(match t.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes),
            DType::F16 => {
                bytemuck::pod_collect_to_vec::<u8, half::f16>(&bytes[..t.len * 2]).into_iter().map(f32::from).collect()
            }
            DType::U32 => bytemuck::pod_collect_to_vec::<u8, u32>(&bytes).into_iter().map(|v| v as f32).collect(),
        })
    }

    /// Copies the first `bytes` bytes of `buffer` to the host (blocking: native only).
    pub fn read_bytes(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_bytes_async(buffer, bytes))
    }

    /// Copies the first `bytes` bytes of `buffer` to the host. Natively this polls the device
    /// until the copy is done; in a browser it yields to the page until the mapping completes.
    pub async fn read_bytes_async(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.next_multiple_of(4).max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.submit(enc.finish());
        let (done, mapped) = crate::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| done.send(r));
        self.wait()?;
        mapped.await.map_err(|e| Error::Readback(e.to_string()))?;
        self.take_uncaptured()?;
        let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
        let out = view[..bytes as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Submits one command buffer. Every submit of wgformer goes through here, so that
    /// [`Gpu::submit_count`] can show that a training step is a single submit.
    pub fn submit(&self, commands: wgpu::CommandBuffer) -> wgpu::SubmissionIndex {
        self.submits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.queue.submit([commands])
    }

    /// How many submits went through [`Gpu::submit`] so far.
    pub fn submit_count(&self) -> u64 {
        self.submits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Blocks until all submitted work has finished; returns any GPU error that no error
    /// scope caught since the last call.
    /// In a browser nothing blocks: the work is only known finished once a readback completes.
    pub fn wait(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::gpu("device poll", e))?;
        self.take_uncaptured()
    }

    /// The GPU error no error scope caught since the last call, if any.
    fn take_uncaptured(&self) -> Result<()> {
        match self.uncaptured.lock().ok().and_then(|mut slot| slot.take()) {
            Some(message) => Err(Error::gpu("GPU work", message)),
            None => Ok(()),
        }
    }

    /// A uniform buffer holding one params struct.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Runs `f` inside validation and out-of-memory error scopes; any error becomes `Err`.
    /// In a browser the scopes cannot be awaited here; errors reach the uncaptured-error
    /// handler instead and are reported by the next [`Gpu::wait`] or readback.
    #[cfg(target_arch = "wasm32")]
    pub fn scoped<T>(&self, _context: &str, f: impl FnOnce() -> T) -> Result<T> {
        Ok(f())
    }

    /// Runs `f` inside validation and out-of-memory error scopes; any error becomes `Err`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        match v.or(o) {
            Some(e) => Err(Error::gpu(context, e)),
            None => Ok(value),
        }
    }

    /// Compiles one WGSL source (validated by naga first, so errors name the file and line).
    pub fn shader(&self, file: &str, source: &str) -> Result<wgpu::ShaderModule> {
        crate::shaders::validate(file, source)?;
        self.scoped(file, || {
            self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(source)),
            })
        })
    }

    /// Like [`Gpu::shader`], but without the runtime bounds checks wgpu adds to every buffer
    /// access (10-40% of a matmul's time on lavapipe). Only for kernels whose indices are
    /// clamped in the shader and whose buffer sizes the host checks before every dispatch.
    /// `WGFORMER_BOUNDS_CHECKS=1` keeps the checks (to rule them out when debugging).
    pub(crate) fn shader_unchecked(&self, file: &str, source: &str) -> Result<wgpu::ShaderModule> {
        if std::env::var("WGFORMER_BOUNDS_CHECKS").is_ok_and(|v| v == "1") {
            return self.shader(file, source);
        }
        crate::shaders::validate(file, source)?;
        self.scoped(file, || {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(source)),
            };
            // SAFETY: every index in these shaders is clamped to the extents that the host
            // checks against the bound buffers' lengths (kernels::check_len) before dispatch.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        })
    }

    /// A compute pipeline for `entry` with pipeline-overridable `constants`.
    pub fn pipeline(
        &self,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        self.scoped(entry, || {
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
                cache: None,
            })
        })
    }
}

/// Element type of a GPU tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    /// Class or token ids.
    U32,
}

/// A flat GPU tensor: a storage buffer and its element count. Shapes live in the graph.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub len: usize,
    pub dtype: DType,
}

impl Tensor {
    /// Bytes the elements occupy.
    pub fn byte_len(&self) -> u64 {
        self.len as u64
            * match self.dtype {
                DType::F32 | DType::U32 => 4,
                DType::F16 => 2,
            }
    }
}
