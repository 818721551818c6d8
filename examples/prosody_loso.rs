//! The prosody branch on its own: leave-one-speaker-out on an EMO-DB folder with the utterance
//! prosody vector (`rescnn::prosody::vector`) and a class-balanced logistic regression whose
//! L2 strength is chosen by an inner leave-one-speaker-out over the fold's training speakers
//! (never the test speaker), as the linear SVM baselines choose their C.
//!
//! ```sh
//! cargo run --release --example prosody_loso -- [EMODB_DIR] [--norm speaker|training] \
//!     [--set basic|full] [--mel-stats] [--fuse RUN_DIR] [--dump FILE.csv]
//! ```
//!
//! `--set full` classifies the large functional set (`rescnn::prosody::functionals`) after the
//! prosody vector. `--mel-stats` appends the functionals of the log-mel statistics baseline to the vector: mean and
//! standard deviation over the voiced-or-not frames (all but the all-silent padding) of each of 64
//! log-mel bands (25 ms / 10 ms) and of their Δ (±2 frames), 256 values, normalised as the prosody
//! vector is. `--fuse RUN_DIR` also scores the average (equal weights, fixed in advance) of this
//! classifier's probabilities with the network probabilities a rescnn-train LOSO run saved
//! (`RUN_DIR/fold-*/test-predictions.json`, its last weights), matched by utterance id; only
//! the folds the run has are scored (an ablation cut short after a few folds).
//!
//! `--dump FILE.csv` also writes the raw vectors (`id,speaker,label,<names>`), for
//! `scripts/svm_check.py`: the baselines' classifier (linear SVM) on our features.
//!
//! Prints per-fold WA/UAR, their mean ± std, the pooled WA/UAR/macro-F1, per-class recall and the
//! pooled confusion matrix.

use std::collections::HashMap;

use rescnn::data::{emodb, CacheOptions, Corpus, FeatureStore, InputNormMode, LoadOptions};
use rescnn::evaluation::metrics::{mean_std, ConfusionMatrix, Evaluator};
use rescnn::evaluation::predict::argmax;
use rescnn::features::deltas::delta_1d;
use rescnn::features::{Spectrogram, StftConfig};
use rescnn::prosody::linear::{select_l2, SoftmaxRegression, L2_GRID};
use rescnn::prosody::{ProsodyConfig, ProsodyNorm, ProsodySet, ProsodyStore};
use rescnn::training::run_dir::{files, TestPredictions};

fn main() -> rescnn::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = emodb::default_dir();
    let mut mode = InputNormMode::Speaker;
    let (mut mel_stats, mut fuse) = (false, None);
    let mut cfg = ProsodyConfig::default();
    let mut dump = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mel-stats" => mel_stats = true,
            "--dump" => {
                dump = Some(
                    it.next()
                        .ok_or_else(|| rescnn::config_err!("--dump: expected a CSV file name"))?
                        .clone(),
                )
            }
            "--set" => {
                cfg.set = match it.next().map(String::as_str) {
                    Some("basic") => ProsodySet::Basic,
                    Some("full") => ProsodySet::Full,
                    other => {
                        return Err(rescnn::config_err!(
                            "--set: expected basic or full, got {other:?}"
                        ))
                    }
                }
            }
            "--fuse" => {
                let dir = it
                    .next()
                    .ok_or_else(|| rescnn::config_err!("--fuse: expected a run directory"))?;
                fuse = Some(network_predictions(std::path::Path::new(dir))?);
            }
            "--norm" => {
                mode = match it.next().map(String::as_str) {
                    Some("speaker") => InputNormMode::Speaker,
                    Some("training") => InputNormMode::Training,
                    other => {
                        return Err(rescnn::config_err!(
                            "--norm: expected speaker or training, got {other:?}"
                        ))
                    }
                }
            }
            other => dir = other.into(),
        }
    }
    let corpus = emodb::load(&dir, &LoadOptions::default())?;
    let t0 = std::time::Instant::now();
    let store = ProsodyStore::build(
        &corpus,
        &cfg,
        rescnn::audio::DEFAULT_SAMPLE_RATE,
        &CacheOptions::default(),
    )?;
    eprintln!(
        "prosody vectors ({} entries) of {} utterances: {} computed, {} cached, {:.1} s",
        cfg.vector_len(),
        corpus.len(),
        store.stats.computed,
        store.stats.loaded,
        t0.elapsed().as_secs_f64()
    );
    if let Some(path) = &dump {
        write_csv(path, &corpus, &store)?;
        eprintln!("raw vectors written to {path}");
    }
    let extra = if mel_stats {
        Some(mel_functionals(&corpus)?)
    } else {
        None
    };
    let speakers: Vec<String> = corpus
        .utterances
        .iter()
        .map(|u| u.speaker.clone())
        .collect();
    let labels: Vec<usize> = corpus.utterances.iter().map(|u| u.label).collect();
    let classes = corpus.classes.len();
    let mut pooled = Evaluator::new(classes);
    let mut fused = Evaluator::new(classes);
    let (mut fused_wa, mut fused_uar) = (Vec::new(), Vec::new());
    let (mut fold_wa, mut fold_uar) = (Vec::new(), Vec::new());
    println!("| test speaker | l2 | WA (%) | UAR (%) |\n|---|---|---|---|");
    for test in corpus.speakers() {
        // A run cut short (a few folds of an ablation) is scored on the folds it has: the
        // branch alone and the fusion then cover the same utterances.
        if let Some(net) = &fuse {
            let in_run = |i: &usize| net.contains_key(&corpus.utterances[*i].id);
            if !(0..corpus.len())
                .filter(|&i| speakers[i] == test)
                .any(|i| in_run(&i))
            {
                println!("| {test} | | not in the run | |");
                continue;
            }
        }
        let train: Vec<usize> = (0..corpus.len()).filter(|&i| speakers[i] != test).collect();
        let norm = ProsodyNorm::for_training(mode, &store, &speakers, &train)?;
        let mut x: Vec<Vec<f32>> = (0..corpus.len())
            .map(|i| norm.normalised(&store, i))
            .collect();
        if let Some(extra) = &extra {
            append_normalised(&mut x, extra, mode, &speakers, &train);
        }
        // The inner folds use the same normalisation: per speaker it is each speaker's own
        // statistics; with training statistics it includes the inner held-out speaker, a small
        // optimism in the choice of l2 only (never in the test speaker's result).
        let l2 = select_l2(&x, &labels, &speakers, &train, classes, &L2_GRID)?;
        let rows: Vec<&[f32]> = train.iter().map(|&i| x[i].as_slice()).collect();
        let y: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let model = SoftmaxRegression::fit(&rows, &y, classes, l2)?;
        let mut fold = ConfusionMatrix::new(classes);
        let mut fold_fused = ConfusionMatrix::new(classes);
        for i in (0..corpus.len()).filter(|&i| speakers[i] == test) {
            let p = model.predict(&x[i]);
            let pred = argmax(&p);
            fold.add(labels[i], pred);
            pooled.add(labels[i], pred, &test, -p[labels[i]].max(1e-300).ln());
            if let Some(net) = &fuse {
                let id = &corpus.utterances[i].id;
                let q = net.get(id).ok_or_else(|| {
                    rescnn::config_err!("--fuse: the run has no test prediction for {id}")
                })?;
                let f: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
                fold_fused.add(labels[i], argmax(&f));
                fused.add(labels[i], argmax(&f), &test, -f[labels[i]].max(1e-300).ln());
            }
        }
        fused_wa.push(fold_fused.weighted_accuracy());
        fused_uar.push(fold_fused.unweighted_average_recall());
        let (wa, uar) = (fold.weighted_accuracy(), fold.unweighted_average_recall());
        fold_wa.push(wa);
        fold_uar.push(uar);
        println!("| {test} | {l2} | {:.2} | {:.2} |", 100.0 * wa, 100.0 * uar);
    }
    let r = pooled.finish();
    let (mw, sw) = mean_std(&fold_wa);
    let (mu, su) = mean_std(&fold_uar);
    println!(
        "\n{} prosody vector{} + logistic regression, {mode} normalisation, LOSO pooled over {} \
         utterances: WA {:.2} UAR {:.2} macro-F1 {:.2}; per fold WA {:.2} ± {:.2}, UAR {:.2} ± {:.2}",
        cfg.set,
        if mel_stats { " and log-mel functionals" } else { "" },
        r.confusion.total(),
        100.0 * r.wa,
        100.0 * r.uar,
        100.0 * r.macro_f1,
        100.0 * mw,
        100.0 * sw,
        100.0 * mu,
        100.0 * su
    );
    if fuse.is_some() {
        let f = fused.finish();
        let (mw, sw) = mean_std(&fused_wa);
        let (mu, su) = mean_std(&fused_uar);
        println!(
            "averaged with the run's network probabilities (0.5 / 0.5): WA {:.2} UAR {:.2} \
             macro-F1 {:.2}; per fold WA {:.2} ± {:.2}, UAR {:.2} ± {:.2}",
            100.0 * f.wa,
            100.0 * f.uar,
            100.0 * f.macro_f1,
            100.0 * mw,
            100.0 * sw,
            100.0 * mu,
            100.0 * su
        );
        print!("fused per-class recall:");
        for (c, rec) in f.per_class_recall.iter().enumerate() {
            print!(" {} {:.1}", corpus.classes[c], 100.0 * rec.unwrap_or(0.0));
        }
        println!();
    }
    print!("per-class recall:");
    for (c, rec) in r.per_class_recall.iter().enumerate() {
        print!(" {} {:.1}", corpus.classes[c], 100.0 * rec.unwrap_or(0.0));
    }
    println!(
        "\nconfusion (rows true, columns predicted, {:?}):",
        corpus.classes
    );
    for t in 0..classes {
        let row: Vec<String> = (0..classes)
            .map(|p| format!("{:3}", r.confusion.count(t, p)))
            .collect();
        println!("  {}", row.join(" "));
    }
    Ok(())
}

/// Utterance id → the network's class probabilities (last weights) from every fold of a run.
fn network_predictions(run: &std::path::Path) -> rescnn::Result<HashMap<String, Vec<f64>>> {
    let mut out = HashMap::new();
    let entries = std::fs::read_dir(run).map_err(|e| rescnn::Error::io(run, e))?;
    for dir in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if !dir.join(files::TEST_PREDICTIONS).is_file() {
            continue;
        }
        let p = TestPredictions::load(&dir)?;
        out.extend(p.ids.into_iter().zip(p.network_last));
    }
    if out.is_empty() {
        return Err(rescnn::config_err!(
            "--fuse {}: no fold test-predictions.json in it",
            run.display()
        ));
    }
    Ok(out)
}

/// The raw (unnormalised) vectors as CSV: `id,speaker,label,<entry names>`, one row per utterance,
/// written atomically.
fn write_csv(path: &str, corpus: &Corpus, store: &ProsodyStore) -> rescnn::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::from("id,speaker,label");
    for name in store.config().names() {
        let _ = write!(out, ",{name}");
    }
    out.push('\n');
    for (i, u) in corpus.utterances.iter().enumerate() {
        let _ = write!(out, "{},{},{}", u.id, u.speaker, u.label);
        for v in store.vector(i) {
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
    rescnn::fsutil::write_atomic(std::path::Path::new(path), out.as_bytes())
}

/// Per utterance: mean and standard deviation over frames of each of 64 log-mel bands and of
/// their Δ (±2 frames), leaving out the all-silent frames of the corpus copy's zero padding.
fn mel_functionals(corpus: &Corpus) -> rescnn::Result<Vec<Vec<f32>>> {
    let stft = StftConfig {
        mel_bands: Some(64),
        ..StftConfig::default()
    };
    let store = FeatureStore::build(corpus, &stft, &CacheOptions::default())?;
    let silent = 10.0 * stft.power_floor.log10() + 1.0;
    let mut spec = Spectrogram {
        frames: 0,
        bins: 0,
        db: Vec::new(),
    };
    let mut out = Vec::with_capacity(corpus.len());
    for u in 0..corpus.len() {
        store.spectrogram_into(u, 0, &mut spec);
        let kept: Vec<usize> = (0..spec.frames)
            .filter(|&t| spec.frame(t).iter().any(|&v| v > silent))
            .collect();
        let mut v = Vec::with_capacity(4 * spec.bins);
        let mut band = vec![0.0f32; kept.len()];
        let mut delta = vec![0.0f32; kept.len()];
        for f in 0..spec.bins {
            for (b, &t) in band.iter_mut().zip(&kept) {
                *b = spec.get(t, f);
            }
            delta_1d(&band, 2, &mut delta);
            for series in [&band, &delta] {
                let (m, s) = mean_std(&series.iter().map(|&x| x as f64).collect::<Vec<_>>());
                v.extend([m as f32, s as f32]);
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// Append `extra`, z-normalised per dimension with each speaker's own statistics (`Speaker`) or
/// the training utterances' (`Training`), to every row of `x`.
fn append_normalised(
    x: &mut [Vec<f32>],
    extra: &[Vec<f32>],
    mode: InputNormMode,
    speakers: &[String],
    train: &[usize],
) {
    let stats = |rows: &[usize]| -> Vec<(f64, f64)> {
        (0..extra[0].len())
            .map(|d| {
                let col: Vec<f64> = rows.iter().map(|&i| extra[i][d] as f64).collect();
                let (m, s) = mean_std(&col);
                (m, if s > 1e-9 { s } else { 1.0 })
            })
            .collect()
    };
    let by_speaker: HashMap<&str, Vec<(f64, f64)>> = match mode {
        InputNormMode::Speaker => speakers
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|s| {
                let rows: Vec<usize> = (0..x.len()).filter(|&i| &speakers[i] == s).collect();
                (s.as_str(), stats(&rows))
            })
            .collect(),
        _ => HashMap::new(),
    };
    let training = stats(train);
    for (i, row) in x.iter_mut().enumerate() {
        let st = by_speaker.get(speakers[i].as_str()).unwrap_or(&training);
        row.extend(
            extra[i]
                .iter()
                .zip(st)
                .map(|(&v, &(m, s))| ((v as f64 - m) / s) as f32),
        );
    }
}
