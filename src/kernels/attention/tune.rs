//! A measured choice among the fused attention's variants (rows, subgroup, tiled), per class
//! of shapes, at first use where attention is tuned (`kernels/tuning.rs`: on GPUs by default).
//! Each variant that runs here is timed forward and backward together, as a training step
//! runs them, and the fastest is kept. The tiled kernels were written for GPUs and had not
//! been measured on one when this landed: the measurement, not a guess, decides where they run.

use super::{Attention, AttentionShape, Variant};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::tuning::{self, attention_class as class_of};

/// Attention is measured with at most this many score entries (B H Tq Tk) on CPU adapters:
/// larger batches are cut.
const CPU_MEASURE_SCORES: usize = 1 << 22;

fn parse(name: &str) -> Option<Variant> {
    [Variant::Rows, Variant::Subgroup, Variant::Tiled].into_iter().find(|v| v.name() == name)
}

impl Attention {
    /// The variants built here.
    fn candidates(&self) -> Vec<Variant> {
        let mut all = vec![Variant::Rows];
        if self.subgroup.is_some() {
            all.push(Variant::Subgroup);
        }
        if self.tiled.is_some() {
            all.push(Variant::Tiled);
        }
        all
    }

    /// The variant a call of shape `s` (`masked`: with key lengths) runs: measured for its
    /// class on first use where that is on and budget is left, else the rule's.
    pub(super) fn choose(&self, gpu: &Gpu, s: &AttentionShape, masked: bool) -> Result<Variant> {
        let candidates = self.candidates();
        if self.fixed || candidates.len() < 2 {
            return Ok(self.rule);
        }
        let class = class_of(s, masked);
        if let Some(v) = self.tuned.get(gpu, &class).and_then(|p| parse(&p)).filter(|v| candidates.contains(v)) {
            return Ok(v);
        }
        if !tuning::budget_left(gpu) {
            return Ok(self.rule);
        }
        match self.measure(gpu, s, masked, &candidates) {
            Ok(i) => {
                self.tuned.insert(gpu, class, candidates[i].name());
                Ok(candidates[i])
            }
            Err(e) if e.is_device_lost() => Err(e),
            // Over a limit, say: the rule's variant reports it when the call is made.
            Err(_) => Ok(self.rule),
        }
    }

    /// The variant a call of shape `s` runs with so far (measured or the rule's), without
    /// measuring: for reports.
    pub fn variant_for(&self, s: &AttentionShape, masked: bool) -> Variant {
        let pick = if self.fixed { None } else { self.tuned.peek(&class_of(s, masked)).and_then(|p| parse(&p)) };
        pick.unwrap_or(self.rule)
    }

    /// The variants measured here per class of shapes, in words (`wgformer info`).
    pub fn describe_choice(&self) -> String {
        let names: Vec<&str> = self.candidates().iter().map(|v| v.name()).collect();
        match self.fixed || names.len() < 2 {
            true => self.rule.name().to_string(),
            false => format!("measured per shape class among {} (rule: {})", names.join(", "), self.rule.name()),
        }
    }

    /// The index of the fastest of `candidates`, forward and backward on zero operands of `s`
    /// (all keys visible where `masked`).
    fn measure(&self, gpu: &Gpu, s: &AttentionShape, masked: bool, candidates: &[Variant]) -> Result<usize> {
        let mut s = *s;
        while gpu.is_cpu() && s.batch > 1 && s.batch * s.heads * s.tq * s.tk > CPU_MEASURE_SCORES {
            s.batch = s.batch.div_ceil(2);
        }
        let (nq, nk, rows) =
            (s.batch * s.tq * s.heads * s.head_dim, s.batch * s.tk * s.heads * s.head_dim, s.batch * s.heads * s.tq);
        let z = |n| gpu.zeros("tune.attention", n);
        let (q, o, dq, dout) = (z(nq)?, z(nq)?, z(nq)?, z(nq)?);
        let (k, v, dk, dv) = (z(nk)?, z(nk)?, z(nk)?, z(nk)?);
        let (lse, delta) = (z(rows)?, z(rows)?);
        let lens = match masked {
            true => Some(gpu.upload_u32("tune.attention.lens", &vec![s.tk as u32; s.batch])?),
            false => None,
        };
        let runs = candidates
            .iter()
            .map(|&variant| {
                let fwd = self.fwd_as(gpu, variant, [&o, &lse, &q, &k, &v], lens.as_ref(), &s)?;
                let bwd = self.bwd_as(
                    gpu,
                    variant,
                    [&dq, &dk, &dv],
                    &delta,
                    [&q, &k, &v, &o, &dout, &lse],
                    lens.as_ref(),
                    &s,
                )?;
                Ok([fwd].into_iter().chain(bwd).collect())
            })
            .collect::<Result<Vec<_>>>()?;
        let rule = candidates.iter().position(|&v| v == self.rule).unwrap_or(0);
        tuning::fastest(gpu, &runs, rule)
    }
}
