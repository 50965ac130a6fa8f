//! Faults injected on purpose, for the tests of what a training run does when the GPU fails
//! midway. A [`FaultPlan`] is given to a `Trainer` (`Trainer::faults`) by its caller (the
//! binary's hidden `--inject-fault` option, which the kill and MPI tests use); nothing here
//! reads the environment, and without a plan nothing happens.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Destroy the device before the step (the step then fails as a lost device would).
    DeviceLost,
    /// Fail the step as out-of-memory.
    OutOfMemory,
    /// Abort the process (as a killed rank of a data-parallel job would die).
    Crash,
}

/// One fault, before one training step, on every rank or one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    pub fault: Fault,
    /// The step (counted from 1) before which it happens.
    pub step: u32,
    /// Only on this rank of a data-parallel job (`None`: every rank).
    pub rank: Option<usize>,
}

impl FaultPlan {
    /// `KIND:STEP` or `KIND:STEP@RANK`, KIND one of `device-lost`, `oom`, `crash`.
    pub fn parse(spec: &str) -> Result<Self> {
        Self::parse_parts(spec).ok_or_else(|| Error::InvalidSetting {
            name: "--inject-fault",
            value: spec.to_string(),
            expected: "device-lost:STEP, oom:STEP or crash:STEP, optionally @RANK (tests only)",
        })
    }

    fn parse_parts(spec: &str) -> Option<Self> {
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
        Some(FaultPlan { fault, step: step.trim().parse().ok()?, rank })
    }

    /// The fault planned for `step` on `rank` (0 outside a data-parallel job), if any.
    pub fn at(&self, step: u32, rank: usize) -> Option<Fault> {
        (self.step == step && self.rank.is_none_or(|r| r == rank)).then_some(self.fault)
    }

    /// Injects the fault planned for `step` on `rank`.
    pub fn inject(&self, gpu: &Gpu, step: u32, rank: usize) -> Result<()> {
        match self.at(step, rank) {
            Some(Fault::DeviceLost) => {
                gpu.device.destroy();
                Ok(())
            }
            Some(Fault::OutOfMemory) => {
                Err(Error::gpu("training step", format!("Out of Memory (injected by --inject-fault at step {step})")))
            }
            Some(Fault::Crash) => {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("--inject-fault: rank {rank} crashes before step {step}\n").as_bytes(),
                );
                std::process::abort()
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_apply_to_their_step_and_rank() {
        let p = FaultPlan::parse("crash:3@1").unwrap();
        assert_eq!((p.at(3, 1), p.at(3, 0), p.at(2, 1)), (Some(Fault::Crash), None, None));
        assert_eq!(FaultPlan::parse("oom:2").unwrap().at(2, 5), Some(Fault::OutOfMemory));
        assert!(FaultPlan::parse("melt:2").is_err() && FaultPlan::parse("oom:x").is_err());
    }
}
