//! Faults injected on purpose, for the tests of what a training run does when the GPU fails
//! midway: `WGFORMER_INJECT_FAULT=device-lost:STEP` destroys the device before training step
//! STEP, `oom:STEP` fails that step as out-of-memory. Unset (the default), nothing happens.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    DeviceLost,
    OutOfMemory,
}

/// The fault `WGFORMER_INJECT_FAULT` asks for at `step`, if any.
pub fn planned(step: u32) -> Result<Option<Fault>> {
    let Ok(spec) = std::env::var("WGFORMER_INJECT_FAULT") else { return Ok(None) };
    let bad = || Error::InvalidSetting {
        name: "WGFORMER_INJECT_FAULT",
        value: spec.clone(),
        expected: "device-lost:STEP or oom:STEP (tests only)",
    };
    let (kind, at) = spec.split_once(':').ok_or_else(bad)?;
    let at: u32 = at.trim().parse().map_err(|_| bad())?;
    let fault = match kind.trim() {
        "device-lost" => Fault::DeviceLost,
        "oom" => Fault::OutOfMemory,
        _ => return Err(bad()),
    };
    Ok((at == step).then_some(fault))
}

/// Injects the fault planned for `step`: the device is destroyed (the step then fails as a lost
/// device would), or the step fails as out-of-memory.
pub fn inject(gpu: &Gpu, step: u32) -> Result<()> {
    match planned(step)? {
        Some(Fault::DeviceLost) => {
            gpu.device.destroy();
            Ok(())
        }
        Some(Fault::OutOfMemory) => Err(Error::gpu(
            "training step",
            format!("Out of Memory (injected by WGFORMER_INJECT_FAULT at step {step})"),
        )),
        None => Ok(()),
    }
}
