//! The ranks a run trains with (data parallel): each rank trains its share of every batch,
//! rank 0 evaluates, plans and writes checkpoints, and the others adopt what it decides. A run
//! of one process has no group and every helper here is a no-op.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::TensorId;
use crate::runtime::trainer::Trainer;

/// This process's place among the ranks training together.
#[derive(Clone, Default)]
pub struct Ranks {
    /// The job's ranks, when there are several.
    #[cfg(not(target_arch = "wasm32"))]
    pub group: Option<std::sync::Arc<dyn crate::dist::collective::Collective>>,
    /// A fault the trainer injects (tests of failure handling).
    pub faults: Option<crate::runtime::fault::FaultPlan>,
}

impl Ranks {
    pub fn rank(&self) -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(g) = &self.group {
            return g.rank();
        }
        0
    }

    pub fn size(&self) -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(g) = &self.group {
            return g.size();
        }
        1
    }

    /// Rank 0 evaluates, reports and writes checkpoints; the others only train.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Gives `trainer` the group and the faults.
    pub fn attach(&self, trainer: &mut Trainer) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            trainer.group = self.group.clone();
        }
        trainer.faults = self.faults;
    }

    /// Fails on every rank unless every rank has the same `description` of `what`.
    pub fn check_same(&self, what: &str, description: &str) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(g) = &self.group {
            use crate::dist::collective::{check_same, fingerprint};
            return check_same(g.as_ref(), what, fingerprint(description.as_bytes()));
        }
        let _ = (what, description);
        Ok(())
    }

    /// A fingerprint of `bytes` for [`Ranks::check_same`] (0 where there are no groups).
    pub fn fingerprint(&self, bytes: &[u8]) -> u64 {
        #[cfg(not(target_arch = "wasm32"))]
        return crate::dist::collective::fingerprint(bytes);
        #[cfg(target_arch = "wasm32")]
        {
            let _ = bytes;
            0
        }
    }

    /// Rank 0's `value` on every rank: decisions rank 0 makes on its clock (a time budget).
    pub fn decide(&self, value: u8) -> Result<u8> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(g) = &self.group {
            return Ok(g.broadcast(0, vec![value])?.first().copied().unwrap_or(value));
        }
        Ok(value)
    }

    /// Replaces `value` with rank 0's, sent as JSON (the run's state after rank 0 validated
    /// and planned).
    pub fn adopt<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: &mut T) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(g) = &self.group {
            let bytes = g.broadcast(0, serde_json::to_vec(value).unwrap_or_default())?;
            if g.rank() != 0 {
                *value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Distributed(format!("rank 0 sent a state this rank cannot read: {e}")))?;
            }
        }
        let _ = value;
        Ok(())
    }

    /// Rank 0's parameters and Adam moments on every rank, so that all start from the same
    /// bits: the moments are set in `trainer`, the parameters returned for the caller to set.
    pub fn start_from_rank_zero(
        &self,
        gpu: &Gpu,
        trainer: &Trainer,
        params: Vec<(TensorId, Vec<f32>)>,
    ) -> Result<Vec<(TensorId, Vec<f32>)>> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(g) = &self.group {
            use crate::dist::collective::broadcast_f32;
            let mut params = params;
            let mut values: Vec<Vec<f32>> = params.iter().map(|(_, v)| v.clone()).collect();
            let state = trainer.exec.optimizer_state(gpu)?;
            let mut moments: Vec<Vec<f32>> = state.iter().flat_map(|(_, m, v)| [m.clone(), v.clone()]).collect();
            broadcast_f32(g.as_ref(), &mut values)?;
            broadcast_f32(g.as_ref(), &mut moments)?;
            for ((_, p), v) in params.iter_mut().zip(values) {
                *p = v;
            }
            for ((p, _, _), mv) in state.iter().zip(moments.chunks(2)) {
                trainer.exec.set_optimizer_state(gpu, *p, &mv[0], &mv[1])?;
            }
            return Ok(params);
        }
        let _ = (gpu, trainer);
        Ok(params)
    }

    /// The global batch split in equal shares: this rank's range of `batch` examples.
    pub fn shard(&self, batch: usize) -> Result<std::ops::Range<usize>> {
        let n = self.size();
        if !batch.is_multiple_of(n) {
            return Err(Error::Config(format!("batch {batch} must be a multiple of the {n} ranks")));
        }
        let per = batch / n;
        Ok(self.rank() * per..(self.rank() + 1) * per)
    }
}
