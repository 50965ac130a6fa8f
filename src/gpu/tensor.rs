//! GPU tensors: flat storage buffers with an element type, their upload and readback.

use super::{Gpu, Held};
use crate::error::{Error, Result};

impl Gpu {
    fn storage_buffer(&self, name: &str, bytes: u64) -> Result<Held<wgpu::Buffer>> {
        self.check_size(name, bytes)?;
        // wgpu rejects zero-sized bindings: keep one element so empty tensors still bind.
        let size = bytes.max(4).next_multiple_of(4);
        // In an error scope: running out of GPU memory becomes an Err naming the tensor.
        self.scoped(name, || {
            self.hold(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
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
        self.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// A u32 tensor (class or token ids) holding `data`.
    pub fn upload_u32(&self, name: &str, data: &[u32]) -> Result<Tensor> {
        let buffer = self.storage_buffer(name, data.len() as u64 * 4)?;
        self.write_buffer(&buffer, 0, bytemuck::cast_slice(data));
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
        self.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
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
        self.write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
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
        self.write_buffer(&buffer, 0, &bytes);
        Ok(Tensor { buffer, len: data.len(), dtype: DType::F16 })
    }

    /// A zero-filled f16 tensor of `len` elements (needs SHADER_F16 to be used by kernels).
    pub fn zeros_f16(&self, name: &str, len: usize) -> Result<Tensor> {
        if !self.caps.f16 {
            return Err(Error::Unsupported { what: "f16 storage (SHADER_F16)", adapter: self.describe() });
        }
        Ok(Tensor { buffer: self.storage_buffer(name, len as u64 * 2)?, len, dtype: DType::F16 })
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
        let staging = {
            let _turn = self.turn();
            let staging = self.hold(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            let mut enc = self.encoder("readback");
            enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
            self.submit(enc.finish());
            staging
        };
        self.map_read(&staging, bytes).await
    }

    /// Maps `staging` (a MAP_READ buffer whose copies are submitted) once the GPU is done,
    /// returns its first `bytes` bytes and unmaps it.
    pub(crate) async fn map_read(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let (done, mapped) = crate::util::oneshot::channel();
        {
            let _turn = self.turn();
            staging.map_async(wgpu::MapMode::Read, .., move |r| done.send(r));
        }
        self.wait()?;
        mapped.await.map_err(|e| Error::Readback(e.to_string()))?;
        self.take_uncaptured()?;
        self.take_mapped(staging, bytes)
    }

    /// Asks for `staging` to be mapped once the work that writes it is done, without waiting:
    /// the receiver gets the outcome after a later [`Gpu::poll_now`] or wait.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn request_map(&self, staging: &wgpu::Buffer) -> std::sync::mpsc::Receiver<Result<()>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let _turn = self.turn();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r.map_err(|e| Error::Readback(e.to_string())));
        });
        rx
    }

    /// Runs the callbacks of finished work without blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn poll_now(&self) -> Result<()> {
        let _turn = self.turn();
        self.device.poll(wgpu::PollType::Poll).map_err(|e| Error::gpu("device poll", e))?;
        self.check_alive()
    }

    /// The first `bytes` of a mapped `staging` buffer, which is then unmapped.
    pub(crate) fn take_mapped(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let _turn = self.turn();
        let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
        let out = view[..bytes as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
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
/// Clones share the buffer.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub(crate) buffer: Held<wgpu::Buffer>,
    pub len: usize,
    pub dtype: DType,
}

impl Tensor {
    /// The storage buffer (at least 4 bytes, even for an empty tensor).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Bytes the elements occupy.
    pub fn byte_len(&self) -> u64 {
        self.len as u64
            * match self.dtype {
                DType::F32 | DType::U32 => 4,
                DType::F16 => 2,
            }
    }
}
