//! One round of a translation run: steps to the round's end (or the time budget's), then, on
//! rank 0, the validation loss and BLEU, the plan (measured after the first round of a
//! budgeted run, shrunk when the pace slows) and the checkpoint.

use super::bleu::bleu_of;
use super::exec::{train_step, validation_loss};
use super::plan;
use super::run::{Round, TranslateRun};
use super::state::{kept_snapshots, linked, save_run, snapshot_name, EpochRecord};
use crate::error::Result;
use crate::models::transformer_decode::Search;
use crate::train::events::StepReport;
use crate::train::{Advance, Event, Observer};
use crate::util::io::LinkFrom;

/// What the steps of a round measured.
struct Steps {
    first_step: u32,
    seconds: f64,
    loss_sum: f64,
    tokens: usize,
}

impl TranslateRun {
    /// One training step; when it ends a round, rank 0 also validates, plans and writes the
    /// checkpoint. A step mixed precision skipped counts as a step here (it is retried).
    pub async fn advance(&mut self, obs: &mut dyn Observer) -> Result<Advance> {
        if self.is_finished() {
            return Ok(Advance::Finished);
        }
        if self.current.is_none() {
            self.current = Some(self.begin_round(obs));
        }
        self.step_once(obs)?;
        match &self.current {
            Some(r) if !r.stopped && self.trainer.step < r.end => Ok(Advance::Step),
            _ => self.close_round(obs),
        }
    }

    /// Steps to the end of the round under way (or a new one); rank 0 then validates, plans
    /// and writes the checkpoint.
    pub async fn round(&mut self, obs: &mut dyn Observer) -> Result<Advance> {
        loop {
            match self.advance(obs).await? {
                Advance::Step => continue,
                done => return Ok(done),
            }
        }
    }

    /// Starts a round: where it ends, and the event that says so.
    fn begin_round(&mut self, obs: &mut dyn Observer) -> Round {
        let (state, round) = (&self.state, self.state.epochs_done);
        let probing = !state.planned;
        let end = match probing {
            true => state.total_steps,
            false => plan::round_end(round, state.probe_steps, state.round_steps, state.total_steps),
        };
        let unit = state.unit(self.per_pass);
        let label = match probing {
            true => format!("{unit} 1 (measuring)"),
            false => format!("{unit} {}/{}", round + 1, state.epochs),
        };
        let steps = u64::from(end.saturating_sub(self.trainer.step));
        obs.event(&Event::RoundStarted { round: round + 1, rounds: state.epochs, steps, label });
        let (start, first_step) = (self.ctx.clock.seconds(), self.trainer.step);
        Round { probing, end, steps, start, first_step, loss_sum: 0.0, tokens: 0, smooth: None, stopped: false }
    }

    /// One step of the round under way, unless rank 0's clock says the round stops here.
    fn step_once(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let Some(r) = &mut self.current else { return Ok(()) };
        let budget = self.state.budget_minutes.map(|m| m * 60.0);
        let spent = self.spent_before + self.ctx.clock.seconds() - self.started_at;
        // Rank 0's clock decides for every rank: 1 out of time, 2 measured enough.
        let measured = self.ctx.clock.seconds() - r.start;
        let stop = match () {
            _ if r.end <= self.trainer.step => 2,
            _ if budget.is_some_and(|b| spent + self.eval_s >= b) => 1,
            _ if r.probing
                && plan::probed(self.trainer.step - r.first_step, measured, budget.unwrap_or(f64::INFINITY)) =>
            {
                2
            }
            _ => 0,
        };
        match self.ctx.ranks.decide(stop)? {
            1 => {
                self.out_of_time = true;
                r.stopped = true;
                return Ok(());
            }
            2 => {
                r.stopped = true;
                return Ok(());
            }
            _ => {}
        }
        let (i, b) = self.stream.at(self.trainer.step);
        let (i, b) = (*i, b.clone());
        let (attempt, lr) = (self.trainer.step + 1, self.trainer.lr());
        let loss = train_step(&self.gpu, &mut self.trainer, &self.ctx.ranks, i, &self.graphs[i], &b)?;
        // A step skipped for an overflowing loss scale (f16) is retried at the lower scale.
        if !loss.is_finite() {
            self.metrics.step(attempt, loss, lr, 0.0);
            return Ok(());
        }
        r.loss_sum += loss as f64 * b.tokens as f64;
        r.tokens += b.tokens;
        let per_second = r.tokens as f64 / (self.ctx.clock.seconds() - r.start).max(1e-9);
        self.metrics.step(attempt, loss, lr, per_second);
        let s = r.smooth.map_or(loss, |s| 0.98 * s + 0.02 * loss);
        r.smooth = Some(s);
        let left = budget.map_or(String::new(), |b| format!(", budget {:.0} min left", (b - spent) / 60.0));
        obs.event(&Event::step(StepReport {
            step: attempt,
            loss,
            smoothed: s,
            lr,
            per_second,
            unit: "tok",
            loss_scale: self.trainer.scaler.map(|s| (s.scale, s.skipped)),
            in_round: (u64::from(self.trainer.step - r.first_step), r.steps),
            extra: crate::train::comm_note(&self.trainer) + &left,
        }));
        Ok(())
    }

    /// Ends the round under way: rank 0 validates, plans and saves; the others adopt its state.
    fn close_round(&mut self, obs: &mut dyn Observer) -> Result<Advance> {
        let Some(r) = self.current.take() else { return Ok(Advance::Finished) };
        let seconds = self.ctx.clock.seconds() - r.start;
        let steps = Steps { first_step: r.first_step, seconds, loss_sum: r.loss_sum, tokens: r.tokens };
        if self.trainer.step == steps.first_step {
            self.done = true;
            return Ok(Advance::Finished);
        }
        if !self.ctx.ranks.is_main() {
            self.ctx.ranks.adopt(&mut self.state)?;
            self.reschedule(self.state.total_steps);
            self.done |= self.out_of_time;
            return Ok(Advance::Round);
        }
        self.end_round(r.probing, steps, obs)?;
        Ok(Advance::Round)
    }

    /// The schedule of a run of `total` steps.
    pub(super) fn reschedule(&mut self, total: u32) {
        let s = &self.state;
        self.trainer.config.schedule = plan::schedule(&s.schedule, s.lr, s.warmup, total, self.cfg.d_model);
    }

    /// Rank 0 after a round's steps: validation, the plan, the checkpoint.
    fn end_round(&mut self, probing: bool, steps: Steps, obs: &mut dyn Observer) -> Result<()> {
        let round = self.state.epochs_done;
        let eval_start = self.ctx.clock.seconds();
        let valid_loss = validation_loss(&self.gpu, &self.evals, &self.valid_batches)?;
        let params = self.trainer.params(&self.gpu)?;
        let named: Vec<(String, Vec<f32>)> =
            params.iter().map(|(p, v)| (self.graphs[0].graph.desc(*p).name.clone(), v.clone())).collect();
        let n_bleu = self.recipe.valid_pairs.min(self.data.valid.len());
        let bleu_pairs = &self.data.valid[..n_bleu];
        let model = self.vocab.translator(&self.cfg, named);
        let (valid_stats, _) = bleu_of(&self.gpu, &model, bleu_pairs, Search::GREEDY)?;
        drop(model);
        let valid_bleu = valid_stats.score();
        let eval_seconds = self.ctx.clock.seconds() - eval_start;
        self.eval_s = eval_seconds;
        self.plan_after(probing, round, &steps, obs);
        let record = EpochRecord {
            epoch: round + 1,
            train_loss: (steps.loss_sum / steps.tokens.max(1) as f64) as f32,
            valid_loss,
            valid_bleu: valid_bleu as f32,
            seconds: steps.seconds + eval_seconds,
            tokens_per_second: steps.tokens as f64 / steps.seconds.max(1e-9),
            step: self.trainer.step,
        };
        let budget = self.state.budget_minutes.map(|m| m * 60.0);
        let values =
            [("train_loss", record.train_loss as f64), ("valid_loss", valid_loss as f64), ("valid_bleu", valid_bleu)];
        obs.event(&Event::Evaluated {
            round: round + 1,
            step: self.trainer.step,
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            summary: format!(
                "{} {}/{}: step {}, train loss {:.3}, valid loss {:.3}, valid BLEU {:.2} (greedy, {} pairs), \
                 {:.0} s + {:.0} s validating, {:.0} target tokens/s{}",
                self.state.unit(self.per_pass),
                record.epoch,
                self.state.epochs,
                self.trainer.step,
                record.train_loss,
                valid_loss,
                valid_bleu,
                n_bleu,
                steps.seconds,
                eval_seconds,
                record.tokens_per_second,
                budget.map_or(String::new(), |b| format!(", {:.1} of {:.0} min spent", self.spent() / 60.0, b / 60.0))
            ),
        });
        self.metrics.eval(self.trainer.step, round + 1, &values);
        self.state.history.push(record);
        self.state.epochs_done = round + 1;
        self.state.step = self.trainer.step;
        self.state.averaged.clear();
        if self.out_of_time {
            // The plan missed: this round is the last.
            self.state.epochs = self.state.epochs_done;
            self.state.total_steps = self.trainer.step;
        }
        let mut keep = linked(kept_snapshots(&self.snapshots_in, round, self.state.average - 1));
        if self.state.average > 1 {
            // This round's snapshot is a second name for the model file.
            keep.push((LinkFrom::Written("model.safetensors".into()), snapshot_name(round + 1)));
        }
        let (gpu, t, first) = (&self.gpu, &self.trainer, &self.graphs[0].graph);
        save_run(gpu, &self.out, &self.cfg, &self.vocab, first, &params, t, &self.state, &self.metrics, keep)?;
        obs.event(&Event::Checkpoint {
            step: self.trainer.step,
            round: round + 1,
            place: self.out.display().to_string(),
        });
        self.snapshots_in = self.out.clone();
        self.ctx.ranks.adopt(&mut self.state)?;
        if self.out_of_time {
            let minutes = self.state.budget_minutes.unwrap_or(0.0);
            obs.event(&Event::note(format!("stopping: the time budget of {minutes:.0} minutes is spent")));
            self.done = true;
        }
        Ok(())
    }

    /// The plan after a round: the first round of a budgeted run measured both rates, so plan
    /// the steps that fit in what is left; a later round slower than planned shrinks the run.
    fn plan_after(&mut self, probing: bool, round: usize, steps: &Steps, obs: &mut dyn Observer) {
        let Some(budget) = self.state.budget_minutes.map(|m| m * 60.0) else { return };
        let per_step = steps.seconds / (self.trainer.step - steps.first_step) as f64;
        if probing {
            let probe =
                plan::Probe { steps: self.trainer.step, per_step, eval_s: self.eval_s, left_s: budget - self.spent() };
            let fit = plan::fit(probe, self.state.total_steps, self.per_pass);
            let s = &mut self.state;
            s.total_steps = fit.total_steps;
            s.round_steps = fit.round_steps;
            s.probe_steps = self.trainer.step;
            s.epochs = plan::rounds(s.probe_steps, fit.round_steps, fit.total_steps);
            s.warmup = plan::warmup_for(self.recipe.warmup, fit.total_steps);
            s.planned = true;
            self.reschedule(fit.total_steps);
            obs.event(&Event::note(format!(
                "planned {} steps ({:.2} passes over the data) in {} rounds: {:.2} s a step, {:.0} s a validation; warmup {}",
                fit.total_steps,
                fit.total_steps as f64 / self.per_pass as f64,
                self.state.epochs,
                per_step,
                self.eval_s,
                self.state.warmup
            )));
            return;
        }
        // A slower pace than planned (a busy machine, longer batches): fewer steps, so that the
        // schedule still ends where the run does.
        let rounds_left = self.state.epochs.saturating_sub(round + 1) as u32;
        let left = budget - self.spent();
        let (step, planned) = (self.trainer.step, self.state.total_steps);
        if let Some(total) = plan::shrink(step, planned, per_step, self.eval_s, rounds_left, left) {
            let s = &mut self.state;
            s.total_steps = total;
            s.epochs = plan::rounds(s.probe_steps, s.round_steps, total).max(round + 1);
            self.reschedule(total);
            obs.event(&Event::note(format!(
                "replanned: {total} steps in {} rounds at {per_step:.2} s a step",
                self.state.epochs
            )));
        }
    }
}
