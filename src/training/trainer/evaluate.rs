//! A fold's evaluations: validation with model selection, and at the end the test evaluation of
//! the selected and the last weights, with `test-predictions.json`.

use super::{TestProbabilities, Trainer};
use crate::backends::Backend;
use crate::evaluation::eval_mode::{predict_with, EvalMode, NetworkInputs};
use crate::evaluation::metrics::EvalReport;
use crate::evaluation::predict::{score, Predictions, SideInput};
use crate::prosody::branch::fuse;
use crate::training::checkpoint::{BestRecord, Checkpoint};
use crate::training::config::Selection;
use crate::training::run_dir::{files, FoldResult, MetricsLine, Parts, TestPredictions};
use crate::Result;

fn is_better(sel: Selection, val: &EvalReport, best: Option<&BestRecord>) -> bool {
    let Some(b) = best else { return true };
    match sel {
        Selection::Uar => val.uar > b.val_uar || (val.uar == b.val_uar && val.loss < b.val_loss),
        Selection::Wa => val.wa > b.val_wa || (val.wa == b.val_wa && val.loss < b.val_loss),
        Selection::Loss => val.loss < b.val_loss,
    }
}

impl<B: Backend<Elem = f32>> Trainer<'_, B> {
    /// The network's class probabilities on `indices`, evaluated as `eval_time` says.
    fn network_predictions(&mut self, indices: &[usize]) -> Result<Predictions> {
        let mode = EvalMode {
            time: self.cfg.eval_time,
            hop: self.cfg.eval_hop,
            batch: self.cfg.batch,
        };
        let side = match (&self.vectors, &self.side_norm) {
            (Some(store), Some(norm)) => Some(SideInput::given(store, norm)),
            _ => None,
        };
        let inputs = NetworkInputs {
            store: self.store,
            image: &self.cfg.spectrogram.image,
            norm: &self.norm,
            side,
        };
        predict_with(self.backend, &mut self.net, inputs, indices, &mode)
    }

    /// The network's probabilities fused with the prosody branch's, when there is one.
    fn fused(&self, network: Predictions, indices: &[usize]) -> Result<Predictions> {
        match (&self.vectors, &self.prosody) {
            (Some(store), Some(branch)) => fuse(
                network,
                branch.predict(store, indices),
                self.cfg.prosody_weight,
            ),
            _ => Ok(network),
        }
    }

    /// Class probabilities on `indices`, evaluated as `eval_time` says, fused with the prosody
    /// branch when there is one.
    fn predictions_on(&mut self, indices: &[usize]) -> Result<Predictions> {
        let p = self.network_predictions(indices)?;
        self.fused(p, indices)
    }

    fn score(&self, p: Predictions) -> EvalReport {
        score(self.net.classes(), p, self.corpus, None)
    }

    /// Evaluate on `indices` as [`Trainer::predictions_on`] predicts.
    fn evaluate_on(&mut self, indices: &[usize]) -> Result<EvalReport> {
        let p = self.predictions_on(indices)?;
        Ok(self.score(p))
    }

    /// `test-predictions.json`: the test utterances' class probabilities from the network's last
    /// and selected weights and, with a prosody branch, from the branch alone, so that fusion
    /// weights, ensembles and the branch's ablation can be scored afterwards without retraining;
    /// and what the fold's results score (`selected`, `last`: fused when there is a branch).
    /// Returns the branch's probabilities.
    fn write_test_predictions(
        &self,
        indices: &[usize],
        network: &Predictions,
        network_selected: &Predictions,
        scored: &TestProbabilities,
    ) -> Result<Option<Predictions>> {
        let prosody = match (&self.vectors, &self.prosody) {
            (Some(store), Some(branch)) => Some(branch.predict(store, indices)),
            _ => None,
        };
        let rows =
            |p: &Predictions| -> Vec<Vec<f64>> { p.iter().map(|(_, v)| v.clone()).collect() };
        TestPredictions {
            classes: self.corpus.classes.clone(),
            ids: indices
                .iter()
                .map(|&i| self.corpus.utterances[i].id.clone())
                .collect(),
            labels: indices
                .iter()
                .map(|&i| self.corpus.utterances[i].label)
                .collect(),
            last: rows(&scored.last),
            network_last: rows(network),
            network_selected: rows(network_selected),
            prosody: prosody.as_ref().map(rows),
            prosody_l2: self.prosody.as_ref().map(|b| b.l2),
            prosody_weight: self.cfg.prosody_weight,
            selected: rows(&scored.selected),
        }
        .save(&self.fold.dir)?;
        Ok(prosody)
    }

    /// Validation evaluation: a metrics line, and the selected checkpoint updated when it improves.
    pub(super) fn validate(&mut self) -> Result<MetricsLine> {
        let st = &mut self.state;
        let samples = st.interval_samples.max(1) as f64;
        let mut line = MetricsLine {
            step: st.step,
            epoch: st.step as f64 / st.batches_per_epoch.max(1) as f64,
            lr: self.cfg.optimizer.lr_at(st.step, st.total_steps),
            train_loss: st.interval_loss_sum / samples,
            train_acc: st.interval_correct as f64 / samples,
            val_loss: None,
            val_wa: None,
            val_uar: None,
            val_f1: None,
            elapsed_s: st.elapsed_s,
            images_per_s: st.images as f64 / st.elapsed_s.max(1e-9),
        };
        st.interval_loss_sum = 0.0;
        st.interval_correct = 0;
        st.interval_samples = 0;
        if !self.fold.split.val.is_empty() {
            let val = self.evaluate_on(&self.fold.split.val.clone())?;
            line.val_loss = Some(val.loss);
            line.val_wa = Some(val.wa);
            line.val_uar = Some(val.uar);
            line.val_f1 = Some(val.macro_f1);
            if is_better(self.cfg.select_by, &val, self.state.best.as_ref()) {
                self.state.best = Some(BestRecord {
                    step: self.state.step,
                    val_wa: val.wa,
                    val_uar: val.uar,
                    val_loss: val.loss,
                });
                self.checkpoint(false)?
                    .save(&self.fold.dir.join(files::BEST))?;
            }
        }
        Ok(line)
    }

    /// Test evaluation of the last and the selected weights.
    pub(super) fn finish(&mut self) -> Result<FoldResult> {
        let dir = self.fold.dir.clone();
        let split = self.fold.split;
        let network_last = self.network_predictions(&split.test)?;
        let last_p = self.fused(network_last.clone(), &split.test)?;
        let last = self.score(last_p.clone());
        let (selected_step, network_selected) = match self.state.best.clone() {
            Some(b) if b.step != self.state.step => {
                let best_path = dir.join(files::BEST);
                let ck = Checkpoint::load(&best_path)?;
                let last_params = self.net.export_params(self.backend)?;
                self.net.import_params(self.backend, &ck.params)?;
                let p = self.network_predictions(&split.test)?;
                self.net.import_params(self.backend, &last_params)?;
                (b.step, p)
            }
            Some(b) => (b.step, network_last.clone()),
            None => {
                // No validation set: the last weights are the selected ones.
                self.checkpoint(false)?.save(&dir.join(files::BEST))?;
                (self.state.step, network_last.clone())
            }
        };
        let selected_p = self.fused(network_selected.clone(), &split.test)?;
        let selected = self.score(selected_p.clone());
        let scored = TestProbabilities {
            selected: selected_p,
            last: last_p,
        };
        let prosody_p =
            self.write_test_predictions(&split.test, &network_last, &network_selected, &scored)?;
        let parts = prosody_p.map(|branch| Parts {
            network: self.score(network_last.clone()),
            branch: self.score(branch),
            prosody_weight: self.cfg.prosody_weight,
        });
        self.test_probabilities = Some(scored);
        let test_speakers = {
            let mut s: Vec<String> = split
                .test
                .iter()
                .map(|&i| self.corpus.utterances[i].speaker.clone())
                .collect();
            s.sort();
            s.dedup();
            s
        };
        let result = FoldResult {
            name: self.fold.name.clone(),
            test_speakers,
            train_utterances: split.train.len(),
            val_utterances: split.val.len(),
            test_utterances: split.test.len(),
            selected_step,
            selected_val: self.state.best.clone(),
            selected,
            last_step: self.state.step,
            last,
            device: self.device.clone(),
            wall_s: self.state.elapsed_s,
            train_images: self.state.images,
            images_per_s: self.state.images as f64 / self.state.elapsed_s.max(1e-9),
            ensemble: None,
            parts,
        };
        Ok(result)
    }
}
