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

/// The fault `WGFORMER_INJECT_FAULT` asks for at `step`, if any. The variable is read once
/// per process: this runs before every training step.
pub fn planned(step: u32) -> Result<Option<Fault>> {
    static PLAN: std::sync::OnceLock<std::result::Result<Option<(Fault, u32)>, String>> = std::sync::OnceLock::new();
    let plan = PLAN.get_or_init(|| match std::env::var("WGFORMER_INJECT_FAULT") {
        Ok(spec) => parse(&spec).map(Some).ok_or(spec),
        Err(_) => Ok(None),
    });
    match plan {
        Ok(plan) => Ok(plan.filter(|&(_, at)| at == step).map(|(fault, _)| fault)),
        Err(spec) => Err(Error::InvalidSetting {
            name: "WGFORMER_INJECT_FAULT",
            value: spec.clone(),
            expected: "device-lost:STEP or oom:STEP (tests only)",
        }),
    }
}

/// `device-lost:STEP` or `oom:STEP`.
fn parse(spec: &str) -> Option<(Fault, u32)> {
    let (kind, at) = spec.split_once(':')?;
    let fault = match kind.trim() {
        "device-lost" => Fault::DeviceLost,
        "oom" => Fault::OutOfMemory,
        _ => return None,
    };
    Some((fault, at.trim().parse().ok()?))
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
