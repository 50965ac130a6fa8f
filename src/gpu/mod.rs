//! `Gpu`: adapter choice, device features and limits, error scopes, submits and waits.
//! Tensors live in `tensor.rs`, turn-taking on single-threaded contexts in `turns.rs`.
//! Everything else talks to wgpu through this folder or `kernels/`.

mod adapters;
mod caps;
pub use adapters::{adapter_summaries, list_adapters, parse_backend, wgpu_backend, AdapterSummary, GpuOptions};
use adapters::{instance, preference};
pub use caps::Caps;
mod tensor;
mod turns;

pub use tensor::{DType, Tensor};
pub use turns::{Held, Turn};

use crate::error::{Error, Result};
use crate::settings::Settings;
use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use turns::Turns;

/// An opened GPU: adapter info, device, queue, and what they support.
///
/// A `Gpu` may be shared by threads. On GL, whose context admits one thread at a time, every
/// call of wgformer takes the device's turn first (see [`Gpu::turn`]).
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub caps: Caps,
    /// The settings the kernels on this device follow (tiles, variants, tuning).
    pub settings: Settings,
    submits: std::sync::atomic::AtomicU64,
    /// The first GPU error no error scope caught (wgpu's default would panic); reported by
    /// the next [`Gpu::wait`].
    uncaptured: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Why the driver lost the device, once it has; every later wait, error scope and
    /// readback returns [`Error::DeviceLost`].
    lost: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    turns: Turns,
    /// Shader modules and pipelines compiled on this device (for tests and `info`).
    compiled: [std::sync::atomic::AtomicU64; 2],
    /// State built once per device and shared (the compiled kernels), by type.
    shared: std::sync::Mutex<HashMap<TypeId, SharedValue>>,
}

/// An `Arc<T>` for one type `T` (boxed, so that it downcasts without `T: Send` in browsers).
#[cfg(not(target_arch = "wasm32"))]
type SharedValue = Box<dyn Any + Send + Sync>;
#[cfg(target_arch = "wasm32")]
type SharedValue = Box<dyn Any>;

impl Gpu {
    /// Opens the best adapter with the default settings; reads no environment variable.
    pub fn new() -> Result<Self> {
        Self::with_options(&GpuOptions::default())
    }

    /// Opens the adapter and settings the environment asks for ([`Settings::from_env`]:
    /// `WGFORMER_BACKEND`, `WGFORMER_ADAPTER`, the kernel and tuning variables): what a
    /// program's `main` calls.
    pub fn from_env() -> Result<Self> {
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
        adapters.retain(|a| wanted.as_ref().is_none_or(|w| a.get_info().name.to_ascii_lowercase().contains(w)));
        let best = adapters.iter().map(|a| (preference(&a.get_info()), a.get_info().backend)).max_by_key(|k| k.0);
        let adapter = match (opts.ordinal, best) {
            (Some(i), Some(best)) => {
                adapters.retain(|a| (preference(&a.get_info()), a.get_info().backend) == best);
                let n = adapters.len();
                Some(adapters.swap_remove(i % n))
            }
            _ => adapters.into_iter().max_by_key(|a| preference(&a.get_info())),
        };
        let adapter = adapter.ok_or_else(|| {
            let mut why = String::new();
            if let Some(b) = opts.backend {
                why += &format!(" for backend {b:?}");
            }
            if let Some(w) = &opts.adapter {
                why += &format!(" with a name containing {w:?}");
            }
            Error::NoAdapter(why)
        })?;
        Self::from_adapter_with(&adapter, opts.settings.clone()).await
    }

    /// Opens a device on `adapter`, with the optional features wgformer uses and the adapter's
    /// real limits (the WebGPU defaults cap storage bindings at 128 MiB and buffers at 256 MiB).
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        pollster::block_on(Self::from_adapter_with(adapter, Settings::default()))
    }

    /// [`Gpu::from_adapter`] without blocking.
    pub async fn from_adapter_async(adapter: &wgpu::Adapter) -> Result<Self> {
        Self::from_adapter_with(adapter, Settings::default()).await
    }

    /// [`Gpu::from_adapter_async`] with `settings` for the kernels.
    pub async fn from_adapter_with(adapter: &wgpu::Adapter, settings: Settings) -> Result<Self> {
        let info = adapter.get_info();
        let have = adapter.features();
        let mut wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        let coop = have.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) && settings.kernels.coop;
        let mut desc = wgpu::DeviceDescriptor {
            label: Some("wgformer"),
            required_features: have & wanted,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        if coop {
            wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            desc.required_features = have & wanted;
            // SAFETY: wgpu asks callers of experimental features to accept that their
            // implementation may still have bugs. wgformer only uses cooperative matrices in
            // `matmul_coop.wgsl`, only with a configuration the adapter lists, and its tests
            // compare every product with the CPU reference; WGFORMER_COOP=0 turns them off.
            desc.experimental_features = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::RequestDevice(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        let mut gpu = Self::from_device(device, queue, info);
        gpu.settings = settings;
        if coop {
            gpu.caps.coop_matrix = adapter.cooperative_matrix_properties();
        }
        Ok(gpu)
    }

    /// The same device with other `settings` (before its first kernel is built: compiled
    /// kernels are shared per device and follow the settings they were built under).
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
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
            // An application's device: its adapter is not at hand to list configurations.
            coop_matrix: Vec::new(),
        };
        let limits = device.limits();
        let uncaptured: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let sink = uncaptured.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert(e.to_string());
            }
        }));
        let lost: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = sink.lock() {
                let why = match reason {
                    wgpu::DeviceLostReason::Destroyed => "destroyed",
                    _ => "driver",
                };
                slot.get_or_insert(if message.is_empty() { why.to_string() } else { format!("{why}: {message}") });
            }
        });
        let turns = Turns::for_backend(info.backend);
        Gpu {
            device,
            queue,
            info,
            limits,
            caps,
            settings: Settings::default(),
            submits: Default::default(),
            uncaptured,
            lost,
            turns,
            compiled: Default::default(),
            shared: Default::default(),
        }
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

    /// The device's one `T`, built by `build` on first use and shared by every later caller:
    /// state that belongs to the device rather than to a run, such as the compiled kernels.
    pub fn shared<T: Any + wgpu::WasmNotSendSync>(
        &self,
        build: impl FnOnce(&Gpu) -> Result<T>,
    ) -> Result<std::sync::Arc<T>> {
        // Held while building, so that two threads never build the same state twice.
        let mut map = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref::<std::sync::Arc<T>>()) {
            return Ok(v.clone());
        }
        let value = std::sync::Arc::new(build(self)?);
        map.insert(TypeId::of::<T>(), Box::new(value.clone()));
        Ok(value)
    }

    /// (shader modules, compute pipelines) compiled on this device so far.
    pub fn compile_counts(&self) -> (u64, u64) {
        let [s, p] = &self.compiled;
        (s.load(std::sync::atomic::Ordering::Relaxed), p.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn count_compile(&self, which: usize) {
        self.compiled[which].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits for this device's turn and holds it until the guard drops. wgformer takes it
    /// itself around every use of the device; an application that shares this `Gpu` between
    /// threads and calls `device` or `queue` directly should hold it across those calls too.
    /// On GL a driver context serves one thread at a time and wgpu panics when a thread waits
    /// for it too long; taking turns here makes threads wait without limit instead. On other
    /// backends the turn costs nothing and excludes nobody.
    pub fn turn(&self) -> Turn<'_> {
        self.turns.take()
    }

    /// Wraps a wgpu object so that its drop happens during this device's turn (dropping a
    /// buffer or pipeline frees a driver object, which on GL needs the context).
    pub fn hold<T>(&self, value: T) -> Held<T> {
        Held::new(value, &self.turns)
    }

    /// Submits one command buffer. Every submit of wgformer goes through here, so that
    /// [`Gpu::submit_count`] can show that a training step is a single submit.
    pub fn submit(&self, commands: wgpu::CommandBuffer) -> wgpu::SubmissionIndex {
        let _turn = self.turn();
        self.submits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.queue.submit([commands])
    }

    /// Writes `bytes` into `buffer` at `offset` (takes effect for the next submit).
    pub fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        let _turn = self.turn();
        self.queue.write_buffer(buffer, offset, bytes);
    }

    /// A new command encoder.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        let _turn = self.turn();
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// How many submits went through [`Gpu::submit`] so far.
    pub fn submit_count(&self) -> u64 {
        self.submits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Blocks until all submitted work has finished; returns any GPU error that no error
    /// scope caught since the last call.
    /// In a browser nothing blocks: the work is only known finished once a readback completes.
    pub fn wait(&self) -> Result<()> {
        let _turn = self.turn();
        #[cfg(not(target_arch = "wasm32"))]
        let polled = self.device.poll(wgpu::PollType::wait_indefinitely());
        self.check_alive()?;
        #[cfg(not(target_arch = "wasm32"))]
        polled.map_err(|e| Error::gpu("device poll", e))?;
        self.take_uncaptured()
    }

    /// Blocks until submission `index` (and those before it) has finished.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        let _turn = self.turn();
        #[cfg(not(target_arch = "wasm32"))]
        let polled = self.device.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None });
        #[cfg(target_arch = "wasm32")]
        drop(index);
        self.check_alive()?;
        #[cfg(not(target_arch = "wasm32"))]
        polled.map_err(|e| Error::gpu("device poll", e))?;
        self.take_uncaptured()
    }

    /// [`Error::DeviceLost`] once the driver has lost the device.
    pub fn check_alive(&self) -> Result<()> {
        match self.lost.lock().ok().and_then(|slot| slot.clone()) {
            Some(why) => Err(Error::DeviceLost(why)),
            None => Ok(()),
        }
    }

    /// The GPU error no error scope caught since the last call, if any (a lost device first:
    /// every error after it follows from it).
    fn take_uncaptured(&self) -> Result<()> {
        self.check_alive()?;
        match self.uncaptured.lock().ok().and_then(|mut slot| slot.take()) {
            Some(message) => Err(Error::gpu("GPU work", message)),
            None => Ok(()),
        }
    }

    /// A uniform buffer holding one params struct. Written through the queue rather than
    /// mapped at creation: on a lost device mapping panics inside wgpu, while a write is only
    /// dropped (and the next wait reports the loss).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let _turn = self.turn();
        let bytes = bytemuck::bytes_of(value);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes.len() as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buffer, 0, bytes);
        buffer
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
        let _turn = self.turn();
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        self.check_alive()?;
        match v.or(o) {
            Some(e) => Err(Error::gpu(context, e)),
            None => Ok(value),
        }
    }

    /// Compiles one WGSL source (validated by naga first, so errors name the file and line).
    pub fn shader(&self, file: &str, source: &str) -> Result<wgpu::ShaderModule> {
        crate::shaders::validate(file, source)?;
        self.count_compile(0);
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
        if self.settings.kernels.bounds_checks {
            return self.shader(file, source);
        }
        crate::shaders::validate(file, source)?;
        self.count_compile(0);
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
        self.count_compile(1);
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
