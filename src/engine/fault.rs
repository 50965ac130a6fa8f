//! Faults injected on purpose, for the tests of what a training run does when the GPU fails
//! midway: `WGFORMER_INJECT_FAULT=device-lost:STEP` destroys the device before training step
//! STEP, `oom:STEP` fails that step as out-of-memory, `crash:STEP` kills the process (as a
//! killed rank of a data-parallel job would die). `KIND:STEP@RANK` injects it on that rank
//! only. Unset (the default), nothing happens.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    DeviceLost,
    OutOfMemory,
    Crash,
}

/// The fault `WGFORMER_INJECT_FAULT` asks for at `step` on `rank` (0 outside a data-parallel
/// job), if any. The variable is read once per process: this runs before every training step.
pub fn planned(step: u32, rank: usize) -> Result<Option<Fault>> {
    type Plan = Option<(Fault, u32, Option<usize>)>;
    static PLAN: std::sync::OnceLock<std::result::Result<Plan, String>> = std::sync::OnceLock::new();
    let plan = PLAN.get_or_init(|| match std::env::var("WGFORMER_INJECT_FAULT") {
        Ok(spec) => parse(&spec).map(Some).ok_or(spec),
        Err(_) => Ok(None),
    });
    match plan {
        Ok(plan) => {
            Ok(plan.filter(|&(_, at, on)| at == step && on.is_none_or(|r| r == rank)).map(|(fault, _, _)| fault))
        }
        Err(spec) => Err(Error::InvalidSetting {
            name: "WGFORMER_INJECT_FAULT",
            value: spec.clone(),
            expected: "device-lost:STEP, oom:STEP or crash:STEP, optionally @RANK (tests only)",
        }),
    }
}

/// `KIND:STEP` or `KIND:STEP@RANK`.
fn parse(spec: &str) -> Option<(Fault, u32, Option<usize>)> {
    let (kind, at) = spec.split_once(':')?;
    let fault = match kind.trim() {
        "device-lost" => Fault::DeviceLost,
        "oom" => Fault::OutOfMemory,
        "crash" => Fault::Crash,
        _ => return None,
    };
    let (step, rank) = match at.split_once('@') {
        Some((step, rank)) => (step, Some(rank.trim().parse().ok()?)),
        None => (at, None),
    };
    Some((fault, step.trim().parse().ok()?, rank))
}

/// Injects the fault planned for `step`: the device is destroyed (the step then fails as a lost
/// device would), or the step fails as out-of-memory.
pub fn inject(gpu: &Gpu, step: u32, rank: usize) -> Result<()> {
    match planned(step, rank)? {
        Some(Fault::DeviceLost) => {
            gpu.device.destroy();
            Ok(())
        }
        Some(Fault::OutOfMemory) => Err(Error::gpu(
            "training step",
            format!("Out of Memory (injected by WGFORMER_INJECT_FAULT at step {step})"),
        )),
        Some(Fault::Crash) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("WGFORMER_INJECT_FAULT: rank {rank} crashes before step {step}\n").as_bytes(),
            );
            std::process::abort()
        }
        None => Ok(()),
    }
}
