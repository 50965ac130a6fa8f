//! The end of a translation run: the mean of the last rounds' weights where it validates
//! better, then the test BLEU, greedy and beam.

use super::bleu::test_bleu;
use super::exec::validation_loss;
use super::run::TranslateRun;
use super::state::{kept_snapshots, linked, save_run};
use crate::error::Result;
use crate::models::transformer_decode::Search;
use crate::models::translation::TranslationModel;
use crate::runtime::exec::HostData;
use crate::train::{Event, Observer};
use std::path::PathBuf;

impl TranslateRun {
    /// Ends the run (rank 0): reports it, then, once it has taken all its rounds (or its time),
    /// keeps the mean of the last rounds' weights when it validates better and reports the test
    /// BLEU, greedy and beam.
    pub fn finish(&mut self, obs: &mut dyn Observer) -> Result<()> {
        if !self.ctx.ranks.is_main() {
            return Ok(());
        }
        let (state, total) = (&self.state, self.state.history.iter().map(|r| r.seconds).sum::<f64>());
        if let Some(last) = state.history.last() {
            obs.event(&Event::Done {
                summary: format!(
                    "done: {} rounds, {} steps ({:.2} passes), {:.0} s of training, {:.0} target tokens/s; valid BLEU {:.2}; checkpoint in {}",
                    state.epochs_done,
                    state.step,
                    state.step as f64 / self.per_pass as f64,
                    total,
                    last.tokens_per_second,
                    last.valid_bleu,
                    self.out.display()
                ),
            });
        }
        // A budget spent before a round could take a step still ends the run with its test
        // BLEU, when this run's directory holds its checkpoint.
        let spent_out = self.out_of_time && self.snapshots_in == self.out;
        let complete = state.epochs_done == state.epochs || self.trainer.step >= state.total_steps;
        if !(complete || spent_out) {
            return Ok(());
        }
        self.average(obs)?;
        let mut test = self.data.test.clone();
        test.truncate(self.recipe.test_pairs.unwrap_or(usize::MAX));
        let model = TranslationModel::load(&self.out)?;
        for (name, search) in [("greedy", Search::GREEDY), ("beam 4", Search::PAPER)] {
            obs.event(&Event::note(test_bleu(&self.gpu, &model, &test, name, search)?.0));
        }
        Ok(())
    }

    /// Checkpoint averaging: the mean of the kept rounds' weights replaces the model when its
    /// validation loss is lower.
    fn average(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let kept = kept_snapshots(&self.snapshots_in, self.state.epochs_done, self.state.average);
        if kept.len() < 2 {
            return Ok(());
        }
        let first = &self.graphs[0].graph;
        let paths: Vec<PathBuf> = kept.iter().map(|(p, _)| p.clone()).collect();
        let (vocab, cfg) = (&self.vocab, &self.cfg);
        let mean = crate::runtime::checkpoint::average_of(&paths, &|p| vocab.read_params(p, cfg, first))?;
        for (p, v) in &mean {
            self.trainer.exec.set(&self.gpu, *p, HostData::F32(v))?;
        }
        let loss = validation_loss(&self.gpu, &self.evals, &self.valid_batches)?;
        let last = self.state.history.last().map_or(f32::INFINITY, |r| r.valid_loss);
        let (from, to) = (self.state.epochs_done + 1 - kept.len(), self.state.epochs_done);
        let better = loss < last;
        let unit = self.state.unit(self.per_pass);
        obs.event(&Event::note(format!(
            "the mean of {unit}s {from}-{to}: valid loss {loss:.3} against {last:.3} for {unit} {to} alone; {}",
            if better { "the checkpoint keeps the mean".to_string() } else { format!("keeping {unit} {to}'s weights") }
        )));
        if better {
            self.state.averaged = (from..=to).collect();
            // The averaged model keeps the run's metrics as the last checkpoint wrote them.
            let metrics = crate::runtime::metrics::Metrics::resume(&self.out, u32::MAX)?;
            let (gpu, t, s) = (&self.gpu, &self.trainer, &self.state);
            save_run(gpu, &self.out, &self.cfg, &self.vocab, first, &mean, t, s, &metrics, linked(kept))?;
        }
        Ok(())
    }
}
