//! How long a translation run trains: a number of passes over the data, or as many steps as a
//! time budget holds, measured on the machine at hand; and the batches of every step.

use crate::runtime::optim::Schedule;
use crate::text::corpus::{Batch, Buckets, Example};
use crate::util::rng::Rng;

/// Minutes of training of a run given neither `--epochs` nor `--max-minutes`: with the
/// validation after each round and the test decoding at the end, the job ends within an hour.
pub const DEFAULT_MINUTES: f64 = 50.0;

/// Passes over the data of a run given no `--epochs` (where the time budget allows them).
pub const DEFAULT_PASSES: usize = 20;

/// Rounds (validation and checkpoint) of a run whose length the time budget sets.
pub const BUDGET_ROUNDS: u32 = 10;

/// The training rate is measured over at least this many seconds (or a twentieth of the
/// budget, if less) and steps before the plan.
pub const PROBE_SECONDS: f64 = 45.0;
const PROBE_STEPS: u32 = 12;

/// Of the measured rate, plan for this share: rounds' validation and slower spells fit in.
const PLAN_MARGIN: f64 = 0.92;

/// The steps of a run: every step's batch comes from a stream of shuffled passes over the
/// training pairs (pass p shuffled by seed * 1000 + p, as epochs always were), so a run is a
/// function of its seed and its step count.
pub struct Stream {
    buckets: Buckets,
    train: Vec<Example>,
    seed: u64,
    pass: Option<usize>,
    batches: Vec<(usize, Batch)>,
    per_pass: usize,
}

impl Stream {
    pub fn new(buckets: Buckets, train: Vec<Example>, seed: u64) -> Self {
        let first = buckets.epoch(&train, &mut Rng::new(seed.wrapping_mul(1000)));
        Stream { buckets, train, seed, pass: Some(0), per_pass: first.len(), batches: first }
    }

    /// Batches in one pass over the data (the same for every pass).
    pub fn per_pass(&self) -> usize {
        self.per_pass
    }

    /// The batch of step `step` (counted from 0) and its bucket.
    pub fn at(&mut self, step: u32) -> &(usize, Batch) {
        let (pass, i) = (step as usize / self.per_pass.max(1), step as usize % self.per_pass.max(1));
        if self.pass != Some(pass) {
            let seed = self.seed.wrapping_mul(1000) + pass as u64;
            self.batches = self.buckets.epoch(&self.train, &mut Rng::new(seed));
            self.pass = Some(pass);
        }
        &self.batches[i]
    }
}

/// The learning-rate schedule of a run: `cosine` (warmup, then a cosine to zero at the planned
/// last step; the default since runs have a known length) or `noam` (the paper's inverse square
/// root, peaking at `lr` after `warmup` steps).
pub fn schedule(kind: &str, lr: f32, warmup: u32, total: u32, d_model: usize) -> Schedule {
    let warmup = warmup.max(1);
    match kind {
        "noam" => {
            let scale = lr * (d_model as f32).sqrt() * (warmup as f32).sqrt();
            Schedule::Noam { d_model, warmup, scale }
        }
        _ => Schedule::WarmupCosine { peak: lr, min_lr: 0.0, warmup, total: total.max(warmup + 1) },
    }
}

/// Warmup steps for a run of `total` steps: as asked, but at most a tenth of the run.
pub fn warmup_for(asked: u32, total: u32) -> u32 {
    asked.min(total / 10).max(1)
}

/// The plan once the rates are known: how many steps fit in the budget left, in rounds of how
/// many steps after the measured first round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    pub total_steps: u32,
    pub round_steps: u32,
}

/// Whether the first round has measured enough to plan: `steps` taken in `seconds`, in a
/// budget of `budget_s`.
pub fn probed(steps: u32, seconds: f64, budget_s: f64) -> bool {
    steps >= PROBE_STEPS && seconds >= PROBE_SECONDS.min(budget_s / 20.0)
}

/// The measured first round: `steps` steps at `per_step` seconds each, and a validation that
/// took `eval_s`; `left_s` seconds of the budget remain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    pub steps: u32,
    pub per_step: f64,
    pub eval_s: f64,
    pub left_s: f64,
}

/// The steps the budget holds after the probe, capped at `max_steps` (the passes asked for).
/// When they all fit, rounds are a pass long; else the rest of the run is cut into
/// [`BUDGET_ROUNDS`] - 1 rounds, each ending with a validation of the measured cost.
pub fn fit(p: Probe, max_steps: u32, per_pass: u32) -> Fit {
    let usable = p.left_s * PLAN_MARGIN;
    let steps_for = |rounds: u32| ((usable - rounds as f64 * p.eval_s) / p.per_step.max(1e-9)).max(0.0).floor();
    let all = max_steps.saturating_sub(p.steps);
    let pass_rounds = all.div_ceil(per_pass.max(1));
    if all as f64 <= steps_for(pass_rounds) {
        return Fit { total_steps: max_steps.max(p.steps), round_steps: per_pass.max(1) };
    }
    let rounds = BUDGET_ROUNDS - 1;
    let more = (steps_for(rounds) as u32).min(all);
    Fit { total_steps: p.steps + more, round_steps: more.div_ceil(rounds).max(1) }
}

/// After a round, at the pace it measured (`per_step` seconds a step, `eval_s` a validation),
/// the steps left of a run at `step` of `total` with `rounds_left` validations to go: a smaller
/// total when they no longer fit in the `left_s` seconds of the budget (never a larger one).
pub fn shrink(step: u32, total: u32, per_step: f64, eval_s: f64, rounds_left: u32, left_s: f64) -> Option<u32> {
    let usable = left_s * PLAN_MARGIN - rounds_left as f64 * eval_s;
    let fit = (usable / per_step.max(1e-9)).max(0.0).floor();
    (fit < total.saturating_sub(step) as f64).then(|| step + fit as u32)
}

/// The last step (exclusive) of round `round` (from 0): after a probe of `probe_steps`, rounds
/// of `round_steps` follow it; without one (runs of given passes) round r ends at (r + 1) passes.
pub fn round_end(round: usize, probe_steps: u32, round_steps: u32, total: u32) -> u32 {
    let r = round as u32;
    let end = match (probe_steps, r) {
        (0, _) => (r + 1).saturating_mul(round_steps),
        (p, 0) => p,
        (p, _) => p.saturating_add(r.saturating_mul(round_steps)),
    };
    end.min(total)
}

/// Rounds in a run of `total` steps.
pub fn rounds(probe_steps: u32, round_steps: u32, total: u32) -> usize {
    let after = total.saturating_sub(probe_steps).div_ceil(round_steps.max(1));
    (after + u32::from(probe_steps > 0)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_that_holds_every_pass_keeps_passes_as_rounds() {
        let p = Probe { steps: 20, per_step: 1.0, eval_s: 10.0, left_s: 3600.0 };
        assert_eq!(fit(p, 1000, 100), Fit { total_steps: 1000, round_steps: 100 });
        assert_eq!(rounds(20, 100, 1000), 11);
        assert_eq!(round_end(0, 20, 100, 1000), 20);
        assert_eq!(round_end(1, 20, 100, 1000), 120);
        assert_eq!(round_end(10, 20, 100, 1000), 1000);
        assert_eq!(round_end(1, 0, 100, 1000), 200);
    }

    #[test]
    fn a_tight_budget_plans_nine_rounds_with_their_validation() {
        // 1 s a step and 20 s a validation: 3000 s hold the steps and 9 validations.
        let p = Probe { steps: 60, per_step: 1.0, eval_s: 20.0, left_s: 3000.0 };
        let f = fit(p, 100_000, 4000);
        let more = (3000.0 * PLAN_MARGIN - 9.0 * 20.0).floor() as u32;
        assert_eq!(f.total_steps, 60 + more);
        assert_eq!(f.round_steps, more.div_ceil(9));
        assert_eq!(rounds(60, f.round_steps, f.total_steps), 10);
        let spent = (f.total_steps - 60) as f64 * 1.0 + 9.0 * 20.0;
        assert!(spent <= 3000.0, "{spent}");
        // A budget already spent ends with the probe.
        let late = Probe { steps: 30, per_step: 1.0, eval_s: 20.0, left_s: 10.0 };
        assert_eq!(fit(late, 1000, 100).total_steps, 30);
    }

    #[test]
    fn a_slower_pace_shrinks_the_plan_and_a_faster_one_keeps_it() {
        // 500 steps left at 1.5 s and 5 validations of 30 s need 900 s; 600 s are left.
        let t = shrink(1000, 1500, 1.5, 30.0, 5, 600.0).expect("shrinks");
        assert_eq!(t, 1000 + ((600.0 * PLAN_MARGIN - 150.0) / 1.5) as u32);
        assert_eq!(shrink(1000, 1500, 0.5, 30.0, 5, 600.0), None);
        assert_eq!(shrink(1000, 1500, 1.5, 30.0, 5, 10.0), Some(1000));
    }

    #[test]
    fn schedules_peak_at_lr_and_cosine_ends_at_zero() {
        let c = schedule("cosine", 1e-3, 100, 1000, 128);
        assert!((c.lr(100) - 1e-3).abs() < 1e-9);
        assert!(c.lr(1000) < 1e-9);
        let n = schedule("noam", 1e-3, 100, 1000, 128);
        assert!((n.lr(100) - 1e-3).abs() < 1e-7);
        assert!(n.lr(400) < n.lr(100));
        assert_eq!(warmup_for(400, 720), 72);
        assert_eq!(warmup_for(400, 100_000), 400);
    }
}
