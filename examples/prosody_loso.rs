//! The prosody branch on its own: leave-one-speaker-out on an EMO-DB folder with the utterance
//! prosody vector (`rescnn::features::prosody`) and a class-balanced logistic regression whose
//! L2 strength is chosen by an inner leave-one-speaker-out over the fold's training speakers
//! (never the test speaker), as the issue's SVM baselines choose their C.
//!
//! ```sh
//! cargo run --release --example prosody_loso -- [EMODB_DIR] [--norm speaker|training]
//! ```
//!
//! Prints per-fold WA/UAR, their mean ± std, the pooled WA/UAR/macro-F1, per-class recall and the
//! pooled confusion matrix.

use rescnn::data::{emodb, CacheOptions, InputNormMode, LoadOptions, ProsodyNorm, ProsodyStore};
use rescnn::features::prosody::{self, ProsodyConfig};
use rescnn::training::inference::argmax;
use rescnn::training::linear::{select_l2, SoftmaxRegression, L2_GRID};
use rescnn::training::metrics::{mean_std, ConfusionMatrix, Evaluator};

fn main() -> rescnn::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = emodb::default_dir();
    let mut mode = InputNormMode::Speaker;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
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
        &ProsodyConfig::default(),
        rescnn::audio::DEFAULT_SAMPLE_RATE,
        &CacheOptions::default(),
    )?;
    eprintln!(
        "prosody vectors ({} entries) of {} utterances: {} computed, {} cached, {:.1} s",
        prosody::LEN,
        corpus.len(),
        store.stats.computed,
        store.stats.loaded,
        t0.elapsed().as_secs_f64()
    );
    let speakers: Vec<String> = corpus
        .utterances
        .iter()
        .map(|u| u.speaker.clone())
        .collect();
    let labels: Vec<usize> = corpus.utterances.iter().map(|u| u.label).collect();
    let classes = corpus.classes.len();
    let mut pooled = Evaluator::new(classes);
    let (mut fold_wa, mut fold_uar) = (Vec::new(), Vec::new());
    println!("| test speaker | l2 | WA (%) | UAR (%) |\n|---|---|---|---|");
    for test in corpus.speakers() {
        let train: Vec<usize> = (0..corpus.len()).filter(|&i| speakers[i] != test).collect();
        let norm = ProsodyNorm::for_training(mode, &store, &speakers, &train)?;
        let x: Vec<Vec<f32>> = (0..corpus.len())
            .map(|i| norm.normalised(&store, i))
            .collect();
        // The inner folds use the same normalisation: per speaker it is each speaker's own
        // statistics; with training statistics it includes the inner held-out speaker, a small
        // optimism in the choice of l2 only (never in the test speaker's result).
        let l2 = select_l2(&x, &labels, &speakers, &train, classes, &L2_GRID)?;
        let rows: Vec<&[f32]> = train.iter().map(|&i| x[i].as_slice()).collect();
        let y: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let model = SoftmaxRegression::fit(&rows, &y, classes, l2)?;
        let mut fold = ConfusionMatrix::new(classes);
        for i in (0..corpus.len()).filter(|&i| speakers[i] == test) {
            let p = model.predict(&x[i]);
            let pred = argmax(&p);
            fold.add(labels[i], pred);
            pooled.add(labels[i], pred, &test, -p[labels[i]].max(1e-300).ln());
        }
        let (wa, uar) = (fold.weighted_accuracy(), fold.unweighted_average_recall());
        fold_wa.push(wa);
        fold_uar.push(uar);
        println!("| {test} | {l2} | {:.2} | {:.2} |", 100.0 * wa, 100.0 * uar);
    }
    let r = pooled.finish();
    let (mw, sw) = mean_std(&fold_wa);
    let (mu, su) = mean_std(&fold_uar);
    println!(
        "\nprosody vector + logistic regression, {mode} normalisation, LOSO pooled over {} \
         utterances: WA {:.2} UAR {:.2} macro-F1 {:.2}; per fold WA {:.2} ± {:.2}, UAR {:.2} ± {:.2}",
        r.confusion.total(),
        100.0 * r.wa,
        100.0 * r.uar,
        100.0 * r.macro_f1,
        100.0 * mw,
        100.0 * sw,
        100.0 * mu,
        100.0 * su
    );
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
