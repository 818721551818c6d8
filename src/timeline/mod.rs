//! Emotion over time for recordings of any length: a window slides over the file and each window
//! is classified as `rescnn predict` classifies a file holding just that stretch of audio.
//!
//! - **Streaming, bounded memory.** The WAV file is decoded incrementally and each window is
//!   resampled from its own source samples plus the filter's context ([`crate::audio::stream`]):
//!   the process holds one batch of windows (their audio, images and utterance vectors) and the
//!   results, never the file.
//! - **Windows.** `window_s` long, every `hop_s` from 0; the last one is moved back to end with the
//!   file, so the windows cover the whole recording and all have the model's usual length (a file
//!   shorter than one window is one window). Each window's image is the model's spectrogram setting
//!   applied to the window alone (per-window dB normalisation, as for a file of that length).
//! - **The whole model.** A window is evaluated as the model evaluates a file (first frames, the
//!   whole window or crops), with its own utterance vector for the prosody branch or a joint
//!   network. A speaker-normalised model uses the statistics of one enrolled speaker, or the
//!   training speakers' when none are given: a recording's windows do not make a speaker's
//!   statistics before the recording has been read.
//! - **Silence.** A window whose RMS level is below `silence_dbfs` (dB relative to a full-scale
//!   RMS of 1.0; default −50 dBFS: speech recorded at a sensible level is −35 to −15 dBFS, a quiet
//!   room −60 and below) is reported as silent and not classified: the spectrogram normalises each
//!   window to its own maximum, so a silent window's image is amplified noise and its "emotion" is
//!   meaningless.

pub mod plot;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::audio::stream::{WavStream, Windows};
use crate::backends::Backend;
use crate::data::{CacheOptions, Corpus, Source, Utterance};
use crate::evaluation::model_file::SpeakerStats;
use crate::evaluation::predict::argmax;
use crate::inference::ensemble::Ensemble;
use crate::inference::model_dir::SpeakerSource;
use crate::training::device::{on_device, resolve, BackendJob, DeviceMemory};
use crate::training::DeviceChoice;
use crate::{config_err, Result};

/// How the window slides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineSettings {
    /// Window length in seconds.
    pub window_s: f64,
    /// Step between window starts in seconds.
    pub hop_s: f64,
    /// Windows with an RMS level below this (dBFS) are silent.
    pub silence_dbfs: f64,
    /// Windows classified per forward pass.
    pub batch: usize,
}

impl Default for TimelineSettings {
    fn default() -> Self {
        TimelineSettings {
            window_s: 2.0,
            hop_s: 1.0,
            silence_dbfs: -50.0,
            batch: 16,
        }
    }
}

impl TimelineSettings {
    pub fn validate(&self) -> Result<()> {
        if !(self.window_s.is_finite() && self.window_s >= 0.1) {
            return Err(config_err!(
                "--window must be at least 0.1 s, got {}",
                self.window_s
            ));
        }
        if !(self.hop_s.is_finite() && self.hop_s > 0.0 && self.hop_s <= self.window_s) {
            return Err(config_err!(
                "--hop must be positive and at most the window ({} s), got {}",
                self.window_s,
                self.hop_s
            ));
        }
        if self.silence_dbfs.is_nan() {
            return Err(config_err!("--silence-db must be a number"));
        }
        if self.batch == 0 {
            return Err(config_err!("the timeline batch must be at least 1"));
        }
        Ok(())
    }
}

/// One window's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowResult {
    pub start_s: f64,
    pub end_s: f64,
    /// RMS level of the window at the analysis rate, dBFS.
    pub rms_dbfs: f64,
    pub silent: bool,
    /// The winning class; `None` for a silent window.
    pub emotion: Option<String>,
    /// Class probabilities in the model's class order; `None` for a silent window.
    pub probabilities: Option<Vec<f64>>,
}

/// The emotion over time of one recording.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    pub file: String,
    pub duration_s: f64,
    pub classes: Vec<String>,
    pub settings: TimelineSettings,
    pub windows: Vec<WindowResult>,
}

/// Start samples of the windows over `total` samples (see the module documentation).
pub fn window_starts(total: u64, window: u64, hop: u64) -> Vec<u64> {
    if total <= window {
        return vec![0];
    }
    let mut starts: Vec<u64> = (0..)
        .map(|k| k * hop)
        .take_while(|&s| s + window < total)
        .collect();
    starts.push(total - window);
    starts.dedup();
    starts
}

/// RMS level in dBFS (−inf for digital silence is reported as −200).
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return -200.0;
    }
    let mean_square = samples
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        / samples.len() as f64;
    (10.0 * mean_square.log10()).max(-200.0)
}

/// The timeline of `path` under `model`, on the device `device` resolves to (as `rescnn predict
/// --device`). A speaker-normalised model normalises every window with `speaker`'s statistics
/// (`rescnn enroll`), or with the training speakers' when there are none.
pub fn timeline(
    model: &Ensemble,
    path: &Path,
    settings: &TimelineSettings,
    speaker: Option<&SpeakerStats>,
    device: DeviceChoice,
) -> Result<Timeline> {
    struct Job<'a> {
        model: &'a Ensemble,
        path: &'a Path,
        settings: &'a TimelineSettings,
        speaker: Option<&'a SpeakerStats>,
    }
    impl BackendJob for Job<'_> {
        type Output = Timeline;
        fn run<B: Backend<Elem = f32>>(
            self,
            backend: &B,
            _memory: &DeviceMemory,
        ) -> Result<Timeline> {
            timeline_on(backend, self.model, self.path, self.settings, self.speaker)
        }
    }
    settings.validate()?;
    let (device, _why) = resolve(device)?;
    on_device(
        device,
        Job {
            model,
            path,
            settings,
            speaker,
        },
    )
}

/// [`timeline`] on `backend`. Each window goes through [`Ensemble::predict_on`] as a file of that
/// stretch would: its spectrogram and utterance vector, the model's evaluation mode, a joint
/// network's second input, the prosody branch and the fusion, an ensemble's members averaged.
pub fn timeline_on<B: Backend<Elem = f32>>(
    backend: &B,
    ensemble: &Ensemble,
    path: &Path,
    settings: &TimelineSettings,
    speaker: Option<&SpeakerStats>,
) -> Result<Timeline> {
    settings.validate()?;
    let model = ensemble.first();
    let rate = model.config.spectrogram.stft.sample_rate;
    let stream = WavStream::open(path)?;
    let duration_s = stream.duration_s();
    let mut windows = Windows::new(stream, rate)?;
    let window = ((settings.window_s * rate as f64).round() as u64).max(1);
    let hop = ((settings.hop_s * rate as f64).round() as u64).max(1);
    let total = windows.total();
    let starts = window_starts(total, window, hop);

    let classes = model.classes().to_vec();
    let mut nets = ensemble.networks(backend)?;
    let (speaker_name, source) = match speaker {
        Some(s) => (
            s.speaker.clone(),
            SpeakerSource::Given(std::slice::from_ref(s)),
        ),
        None => ("-".to_string(), SpeakerSource::Training),
    };
    let batch = settings.batch.min(starts.len()).max(1);
    let mut results = Vec::with_capacity(starts.len());
    // (result index, the window's samples) of the windows waiting for the next batch.
    let mut pending: Vec<(usize, Vec<f32>)> = Vec::with_capacity(batch);
    let mut flush =
        |pending: &mut Vec<(usize, Vec<f32>)>, results: &mut Vec<WindowResult>| -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let corpus = Corpus {
                name: "timeline".into(),
                classes: classes.clone(),
                utterances: pending
                    .drain(..)
                    .map(|(r, samples)| Utterance {
                        id: r.to_string(),
                        duration_s: samples.len() as f64 / rate as f64,
                        source: Source::Samples {
                            samples: Arc::new(samples),
                            rate,
                        },
                        label: 0,
                        speaker: speaker_name.clone(),
                    })
                    .collect(),
            };
            let store = model.features(&corpus)?;
            let vectors = model.vectors_with(&corpus, &CacheOptions::in_memory())?;
            let indices: Vec<usize> = (0..corpus.len()).collect();
            let predicted = ensemble.predict_on(
                backend,
                &mut nets,
                &corpus,
                &store,
                vectors.as_ref(),
                source,
                &indices,
            )?;
            for (u, probs) in predicted.fused {
                let r: usize = corpus.utterances[u]
                    .id
                    .parse()
                    .expect("ids are result indices");
                results[r].emotion = Some(classes[argmax(&probs)].clone());
                results[r].probabilities = Some(probs);
            }
            Ok(())
        };
    let mut samples = Vec::new();
    for &start in &starts {
        windows.window(start, window, &mut samples)?;
        let level = rms_dbfs(&samples);
        let silent = level < settings.silence_dbfs;
        results.push(WindowResult {
            start_s: start as f64 / rate as f64,
            end_s: (start + samples.len() as u64) as f64 / rate as f64,
            rms_dbfs: level,
            silent,
            emotion: None,
            probabilities: None,
        });
        if silent {
            continue;
        }
        // The window's samples go to the batch; `window` refills the buffer for the next one.
        pending.push((results.len() - 1, std::mem::take(&mut samples)));
        if pending.len() == batch {
            flush(&mut pending, &mut results)?;
        }
    }
    flush(&mut pending, &mut results)?;
    Ok(Timeline {
        file: path.display().to_string(),
        duration_s,
        classes,
        settings: settings.clone(),
        windows: results,
    })
}

impl Timeline {
    /// CSV: start, end, rms, emotion (`silent` for silent windows), one probability column per class
    /// (empty for silent windows).
    pub fn to_csv(&self) -> String {
        let mut out = format!(
            "start_s,end_s,rms_dbfs,emotion,{}\n",
            self.classes.join(",")
        );
        for w in &self.windows {
            let emotion = w.emotion.as_deref().unwrap_or("silent");
            let probs = match &w.probabilities {
                Some(p) => p
                    .iter()
                    .map(|v| format!("{v:.6}"))
                    .collect::<Vec<_>>()
                    .join(","),
                None => vec![""; self.classes.len()].join(","),
            };
            out.push_str(&format!(
                "{:.3},{:.3},{:.1},{emotion},{probs}\n",
                w.start_s, w.end_s, w.rms_dbfs
            ));
        }
        out
    }

    /// One line per window for a person.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}: {:.2} s, {} window{} of {} s every {} s (silent below {} dBFS)\n",
            self.file,
            self.duration_s,
            self.windows.len(),
            if self.windows.len() == 1 { "" } else { "s" },
            self.settings.window_s,
            self.settings.hop_s,
            self.settings.silence_dbfs
        );
        for w in &self.windows {
            match &w.probabilities {
                None => out.push_str(&format!(
                    "{:8.2} – {:8.2} s  silent ({:.1} dBFS)\n",
                    w.start_s, w.end_s, w.rms_dbfs
                )),
                Some(p) => {
                    let probs: Vec<String> = self
                        .classes
                        .iter()
                        .zip(p)
                        .map(|(c, v)| format!("{c} {v:.3}"))
                        .collect();
                    out.push_str(&format!(
                        "{:8.2} – {:8.2} s  {:<10} ({})\n",
                        w.start_s,
                        w.end_s,
                        w.emotion.as_deref().unwrap_or("?"),
                        probs.join(", ")
                    ));
                }
            }
        }
        out
    }
}
