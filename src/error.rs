//! The one error type of wgformer. Every fallible public function returns `Result<T>`.

use std::fmt;

/// Everything that can go wrong in wgformer, each with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter matched the request (or none exists).
    #[error("no GPU adapter found{0}\n  wgformer needs a Vulkan, Metal, DX12 or GL adapter. On Linux without a GPU, install Mesa's software Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`).\n  Override the choice with WGFORMER_BACKEND=vulkan|metal|dx12|gl and WGFORMER_ADAPTER=<name substring>.")]
    NoAdapter(String),
    /// An environment variable or option holds a value wgformer does not understand.
    #[error("invalid value {value:?} for {name}: expected {expected}")]
    InvalidSetting { name: &'static str, value: String, expected: &'static str },
    /// The adapter refused to create a device.
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    /// A tensor would not fit a buffer or binding on this adapter.
    #[error("tensor {name} needs {bytes} bytes, over this adapter's {limit} of {max} bytes")]
    TooLarge { name: String, bytes: u64, limit: &'static str, max: u64 },
    /// Shapes or sizes that do not fit together.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    /// A feature the operation needs is missing on this adapter.
    #[error("{what} is not supported by this adapter ({adapter})")]
    Unsupported { what: &'static str, adapter: String },
    /// wgpu reported a validation, out-of-memory or internal error.
    #[error("GPU error in {context}: {message}")]
    Gpu { context: String, message: String },
    /// A WGSL shader failed to parse or validate.
    #[error("shader {file}: {message}")]
    Shader { file: String, message: String },
    /// The driver lost the device (a reset, a hang, a removed GPU, or `destroy`): everything on
    /// it is gone, and only a new [`Gpu`](crate::Gpu) can go on.
    #[error("the GPU device was lost ({0}); its tensors are gone: open the device again (a training run continues from its last checkpoint with --resume)")]
    DeviceLost(String),
    /// Training produced a NaN or inf loss or gradient norm (a too high learning rate, or bad
    /// data); with clipping on, that step's update was skipped.
    #[error("the {what} is {value} at step {step}: training stopped (the last checkpoint is intact); lower the learning rate (--lr) or check the data")]
    NonFinite { step: u32, what: &'static str, value: f32 },
    /// Reading results back from the GPU failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),
    /// A model configuration that cannot be built.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Checked mode: a node's GPU output differs from the CPU reference.
    #[error("node {node} ({op}) output {tensor} differs from the CPU reference: {detail}")]
    Check { node: usize, op: &'static str, tensor: String, detail: String },
    /// Data handed to the engine that does not fit what it was built for.
    #[error("input {name}: {msg}")]
    Input { name: String, msg: String },
    /// A file whose contents are not what they should be.
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    /// Data-parallel training across processes failed: a rank disagrees with the others, or
    /// the communication library reported an error.
    #[error("data-parallel training: {0}")]
    Distributed(String),
    /// File system errors, with the path involved.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// `Result` with wgformer's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps any displayable GPU-side failure with where it happened.
    pub(crate) fn gpu(context: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Gpu { context: context.into(), message: message.to_string() }
    }

    /// Whether this is the loss of the GPU device (its memory and objects are gone).
    pub fn is_device_lost(&self) -> bool {
        matches!(self, Error::DeviceLost(_))
    }

    /// A shape error for `op`.
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
}
