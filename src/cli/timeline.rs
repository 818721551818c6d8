//! `rescnn predict --model RUN_DIR --timeline [--window S --hop S] LONG.wav`: the emotion over time
//! of recordings of any length (see [`crate::timeline`]), as text, `--json` or `--csv`, and
//! `--plot out.svg`.

use std::path::PathBuf;

use crate::data::InputNormMode;
use crate::evaluation::model_file::SpeakerStats;
use crate::inference::ensemble::Ensemble;
use crate::timeline::{plot, timeline, Timeline, TimelineSettings};
use crate::training::DeviceChoice;
use crate::{config_err, Result};

/// The timeline options of `rescnn predict`.
#[derive(clap::Args, Debug, Clone)]
pub struct TimelineArgs {
    /// Slide a window over each (long) recording and report the emotion per window.
    #[arg(long)]
    pub timeline: bool,
    /// Timeline window length in seconds.
    #[arg(long, value_name = "S", default_value_t = TimelineSettings::default().window_s, requires = "timeline")]
    pub window: f64,
    /// Timeline step between window starts in seconds.
    #[arg(long, value_name = "S", default_value_t = TimelineSettings::default().hop_s, requires = "timeline")]
    pub hop: f64,
    /// Windows whose RMS level is below this many dBFS are reported as silent, not classified.
    #[arg(long, value_name = "DB", default_value_t = TimelineSettings::default().silence_dbfs, allow_negative_numbers = true, requires = "timeline")]
    pub silence_db: f64,
    /// Print the timeline as CSV (one row per window).
    #[arg(long, requires = "timeline", conflicts_with = "json")]
    pub csv: bool,
    /// Also draw the timeline as SVG (with several files: one per file, FILE-<n>.svg after the first).
    #[arg(long, value_name = "OUT.svg", requires = "timeline")]
    pub plot: Option<PathBuf>,
}

impl TimelineArgs {
    pub fn settings(&self) -> TimelineSettings {
        TimelineSettings {
            window_s: self.window,
            hop_s: self.hop,
            silence_dbfs: self.silence_db,
            ..TimelineSettings::default()
        }
    }
}

/// The JSON of one timeline: probabilities keyed by class, `null` for silent windows.
pub fn to_json(t: &Timeline) -> serde_json::Value {
    let windows: Vec<serde_json::Value> = t
        .windows
        .iter()
        .map(|w| {
            let probs = w.probabilities.as_ref().map(|p| {
                t.classes
                    .iter()
                    .zip(p)
                    .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                    .collect::<serde_json::Map<_, _>>()
            });
            serde_json::json!({
                "start_s": w.start_s, "end_s": w.end_s, "rms_dbfs": w.rms_dbfs, "silent": w.silent,
                "emotion": w.emotion, "probabilities": probs,
            })
        })
        .collect();
    serde_json::json!({
        "file": t.file, "duration_s": t.duration_s, "classes": t.classes,
        "window_s": t.settings.window_s, "hop_s": t.settings.hop_s,
        "silence_dbfs": t.settings.silence_dbfs, "windows": windows,
    })
}

pub fn run(
    model: &Ensemble,
    files: &[PathBuf],
    args: &TimelineArgs,
    speaker: Option<&SpeakerStats>,
    json: bool,
    device: DeviceChoice,
) -> Result<()> {
    let settings = args.settings();
    if model.first().input_norm_mode() == InputNormMode::Speaker && speaker.is_none() {
        eprintln!(
            "note: this model normalises each speaker with their own statistics and none were \
             given: the timeline uses the training speakers' statistics, which is less accurate \
             (save the speaker's with `rescnn enroll` and pass --speaker-stats)"
        );
    }
    let mut all = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let t = timeline(model, file, &settings, speaker, device)?;
        if let Some(svg) = &args.plot {
            let path = if i == 0 {
                svg.clone()
            } else {
                let stem = svg
                    .file_stem()
                    .map_or("timeline".into(), |s| s.to_string_lossy().into_owned());
                svg.with_file_name(format!("{stem}-{}.svg", i + 1))
            };
            crate::fsutil::write_atomic(&path, plot::svg(&t).as_bytes())?;
            eprintln!(
                "{}: timeline plot written to {}",
                file.display(),
                path.display()
            );
        }
        if json {
            all.push(to_json(&t));
        } else if args.csv {
            if files.len() > 1 {
                println!("# {}", file.display());
            }
            print!("{}", t.to_csv());
        } else {
            print!("{}", t.to_text());
        }
    }
    if json {
        let out = if all.len() == 1 {
            all.remove(0)
        } else {
            serde_json::Value::Array(all)
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| config_err!("{e}"))?
        );
    }
    Ok(())
}
