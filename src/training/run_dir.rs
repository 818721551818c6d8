//! The run directory on disk: its file names, the fold folders, STATUS, and `metrics.jsonl`.
//!
//! ```text
//! config.toml   the effective configuration (written first)
//! .lock         held (flock) by the rescnn-train using the folder, with its process id
//! STATUS        running / interrupted (with the resume command) / failed (with the error) / complete
//! split.json, metrics.jsonl, checkpoints/{last,best}.safetensors, accuracy.svg, loss.svg,
//! confusion.svg, confusion-last.svg, fold.json, result.json, summary.md   (single split)
//! fold-NN-SPEAKER/ with the same files per fold, and the pooled report at the top (LOSO)
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::BestRecord;
use crate::data::split::{self, Split};
use crate::data::Corpus;
use crate::evaluation::ensemble::EnsembleResult;
use crate::evaluation::metrics::EvalReport;
use crate::{Error, Result};

/// Where a new run goes when `--out` is not given: `runs/<UTC time>-<label>`.
pub fn default_run_dir(label: &str) -> PathBuf {
    PathBuf::from("runs").join(format!("{}-{label}", utc_stamp()))
}

/// The current UTC time as `YYYYmmdd-HHMMSS`.
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Files of a fold directory.
pub mod files {
    pub const METRICS: &str = "metrics.jsonl";
    pub const LAST: &str = "checkpoints/last.safetensors";
    pub const BEST: &str = "checkpoints/best.safetensors";
    pub const RESULT: &str = "result.json";
    pub const FOLD_RESULT: &str = "fold.json";
    pub const SPLIT: &str = "split.json";
    pub const STATUS: &str = "STATUS";
    pub const SUMMARY: &str = "summary.md";
    pub const CONFIG: &str = "config.toml";
    /// The run directory's lock (see [`super::RunLock`]).
    pub const LOCK: &str = ".lock";
    /// A fold's test probabilities ([`super::TestPredictions`]).
    pub const TEST_PREDICTIONS: &str = "test-predictions.json";
    /// The test probabilities an ensemble member's results score (the ensemble is their average).
    pub const MEMBER_PROBABILITIES: &str = "test-probabilities.json";
}

/// The folder of fold `k` (0-based) of a multi-fold run, named after its test speaker (or its
/// number).
fn fold_dir_name(k: usize, speaker: &str) -> String {
    format!("fold-{:02}-{speaker}", k + 1)
}

/// The folder of the ensemble member trained from `seed` inside its fold's folder.
pub fn member_dir(fold_dir: &Path, seed: u64) -> PathBuf {
    fold_dir.join(format!("seed-{seed}"))
}

/// The seed of an ensemble member's folder named `name` (see [`member_dir`]); `None` for any
/// other folder.
pub fn member_seed(name: &str) -> Option<u64> {
    name.strip_prefix("seed-")?.parse().ok()
}

/// The ensemble members' folders inside `fold_dir` (see [`member_dir`]) for which `holds` is true,
/// in seed order; empty when it has none (or cannot be read).
pub fn member_dirs(fold_dir: &Path, holds: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fold_dir) else {
        return Vec::new();
    };
    let mut members: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| holds(p))
        .filter_map(|p| Some((member_seed(p.file_name()?.to_str()?)?, p)))
        .collect();
    members.sort();
    members.into_iter().map(|(_, p)| p).collect()
}

/// The folder of the `k`-th (0-based) network of a sweep, named after it.
pub fn sweep_member_dir(sweep_dir: &Path, k: usize, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    sweep_dir.join(format!("{:02}-{}", k + 1, safe.trim_matches('_')))
}

/// Exclusive use of a run directory, for as long as the value lives.
///
/// An advisory `flock` on `files::LOCK` (through the `fs4` crate): the kernel releases
/// it when the holder exits, however it exits (kill -9 included), so a dead process's lock needs
/// no detection and there is no PID-reuse race as with a PID file checked for liveness. The file
/// also holds the holder's process id, for the message a second user gets.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Take the lock of `dir` (which must exist), or say who holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        use std::io::{Read as _, Seek as _};
        let path = dir.join(files::LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {
                file.set_len(0).map_err(|e| Error::io(&path, e))?;
                file.rewind().map_err(|e| Error::io(&path, e))?;
                writeln!(file, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
                Ok(RunLock { _file: file })
            }
            Err(fs4::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("another rescnn-train (process {pid})"),
                    Err(_) => "another rescnn-train".to_string(),
                };
                Err(crate::config_err!(
                    "the run directory {} is in use by {holder}; wait for it to finish or stop it, \
                     then continue with --resume {}",
                    dir.display(),
                    dir.display()
                ))
            }
            Err(fs4::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Everything one fold trains and evaluates on.
#[derive(Clone, Debug)]
pub struct Fold<'a> {
    pub name: String,
    /// 0-based fold number (0 for single splits); seeds are derived from it.
    pub index: u64,
    pub split: &'a Split,
    pub dir: PathBuf,
}

/// Fold folders (the run directory itself for a single split) with their split files. An existing
/// split file (a resumed run) must be the same split.
pub fn lay_out_folds<'s>(
    dir: &Path,
    corpus: &Corpus,
    splits: &'s [Split],
) -> Result<Vec<Fold<'s>>> {
    splits
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let fold_dir = if splits.len() == 1 {
                dir.to_path_buf()
            } else {
                let speaker = match &s.protocol {
                    split::Protocol::LeaveOneSpeakerOut { test_speaker, .. } => test_speaker.clone(),
                    _ => format!("{k}"),
                };
                dir.join(fold_dir_name(k, &speaker))
            };
            crate::fsutil::create_dir_all(&fold_dir)?;
            let path = fold_dir.join(files::SPLIT);
            if path.exists() {
                let saved = Split::load(corpus, &path)?;
                if saved.train != s.train || saved.val != s.val || saved.test != s.test {
                    return Err(Error::data(
                        &path,
                        "differs from the split the configuration gives now (has the corpus changed?)",
                    ));
                }
            } else {
                s.save(corpus, &path)?;
            }
            Ok(Fold {
                name: s.name(),
                index: k as u64,
                split: s,
                dir: fold_dir,
            })
        })
        .collect()
}

/// Read a `result.json` or `fold.json`.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(path, format!("unreadable result: {e}")))
}

/// The test results of a finished fold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    pub name: String,
    pub test_speakers: Vec<String>,
    pub train_utterances: usize,
    pub val_utterances: usize,
    pub test_utterances: usize,
    /// The selected weights: best validation evaluation (by the configured criterion).
    pub selected_step: u64,
    pub selected_val: Option<BestRecord>,
    pub selected: EvalReport,
    /// The weights after the last step.
    pub last_step: u64,
    pub last: EvalReport,
    pub device: String,
    pub wall_s: f64,
    pub train_images: u64,
    pub images_per_s: f64,
    /// With `ensemble` > 1: the members' results; `selected` and `last` are then the ensemble's,
    /// and the counts and times are the members' sums. (Absent for one network.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleResult>,
    /// With a prosody branch: the test results of its two parts alone, beside `last` (their
    /// fusion); for an ensemble, the members' networks averaged and the branch. (Absent without a
    /// branch.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Parts>,
}

/// The test results of the parts of a fused model: the network alone (its last weights) and the
/// prosody branch alone; their fusion at `prosody_weight` is the fold's `last` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parts {
    pub network: EvalReport,
    pub branch: EvalReport,
    pub prosody_weight: f64,
}

/// `test-predictions.json` of a finished fold (or ensemble member): its test utterances' class
/// probabilities, one row per utterance in the order of `ids` and `labels`, so that fusion
/// weights, ensembles and the prosody branch's ablation can be scored afterwards without
/// retraining (`rescnn score`). The fields are in name order, the order of the file's keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestPredictions {
    pub classes: Vec<String>,
    pub ids: Vec<String>,
    /// Each utterance's class index.
    pub labels: Vec<usize>,
    /// What the fold's `last` result scores (fused with the prosody branch when there is one).
    pub last: Vec<Vec<f64>>,
    /// The network alone, last weights.
    pub network_last: Vec<Vec<f64>>,
    /// The network alone, selected weights.
    pub network_selected: Vec<Vec<f64>>,
    /// The prosody branch alone (`None` without a branch).
    pub prosody: Option<Vec<Vec<f64>>>,
    /// The branch's L2 strength (`None` without a branch).
    pub prosody_l2: Option<f64>,
    pub prosody_weight: f64,
    /// What the fold's `selected` result scores.
    pub selected: Vec<Vec<f64>>,
}

impl TestPredictions {
    /// Write `dir/test-predictions.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::fsutil::write_atomic(
            &dir.join(files::TEST_PREDICTIONS),
            serde_json::to_string(self)
                .expect("predictions serialise")
                .as_bytes(),
        )
    }

    /// Read `dir/test-predictions.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(files::TEST_PREDICTIONS);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            crate::config_err!("{}: not a test-predictions file ({e})", path.display())
        })
    }
}

/// How a fold ended.
#[derive(Clone, Debug)]
pub enum FoldOutcome {
    Done(Box<FoldResult>),
    Interrupted { step: u64, total: u64 },
}

/// One line of `metrics.jsonl`: an evaluation on the validation set and the training statistics
/// since the previous one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: u64,
    pub epoch: f64,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: Option<f64>,
    pub val_wa: Option<f64>,
    pub val_uar: Option<f64>,
    pub val_f1: Option<f64>,
    /// Wall time since the fold started (seconds, across resumptions).
    pub elapsed_s: f64,
    /// Training images per second so far.
    pub images_per_s: f64,
}

/// Write `text` to `dir/STATUS` (atomically).
pub fn write_status(dir: &Path, text: &str) -> Result<()> {
    crate::fsutil::write_atomic(&dir.join(files::STATUS), format!("{text}\n").as_bytes())
}

/// Read `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::data(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Keep only the evaluations up to `step` (a resumed run recomputes the later ones).
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let kept: Vec<MetricsLine> = read_metrics(path)?
        .into_iter()
        .filter(|m| m.step <= step)
        .collect();
    let mut text = String::new();
    for m in &kept {
        text.push_str(&serde_json::to_string(m).expect("metrics serialise"));
        text.push('\n');
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
}

pub fn append_metrics(path: &Path, line: &MetricsLine) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(
        f,
        "{}",
        serde_json::to_string(line).expect("metrics serialise")
    )
    .map_err(|e| Error::io(path, e))
}

/// One line per evaluation for the console and logs.
pub fn describe_line(name: &str, m: &MetricsLine, total: u64) -> String {
    let val = match (m.val_wa, m.val_uar, m.val_loss) {
        (Some(wa), Some(uar), Some(loss)) => format!(
            "val loss {loss:.3} WA {:.1}% UAR {:.1}%",
            100.0 * wa,
            100.0 * uar
        ),
        _ => "no validation set".to_string(),
    };
    format!(
        "{name}: step {}/{total} (epoch {:.1})  train loss {:.3} acc {:.1}%  {val}  [{:.0} s, {:.1} img/s]",
        m.step,
        m.epoch,
        m.train_loss,
        100.0 * m.train_acc,
        m.elapsed_s,
        m.images_per_s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs on disk are read back by these keys (`rescnn score`, the examples), in this order.
    #[test]
    fn test_predictions_keep_their_keys_and_order() {
        let p = TestPredictions {
            classes: vec!["a".into(), "b".into()],
            ids: vec!["u0".into()],
            labels: vec![1],
            last: vec![vec![0.25, 0.75]],
            network_last: vec![vec![0.5, 0.5]],
            network_selected: vec![vec![0.125, 0.875]],
            prosody: None,
            prosody_l2: Some(0.3),
            prosody_weight: 0.5,
            selected: vec![vec![0.0, 1.0]],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(
            text,
            r#"{"classes":["a","b"],"ids":["u0"],"labels":[1],"last":[[0.25,0.75]],"network_last":[[0.5,0.5]],"network_selected":[[0.125,0.875]],"prosody":null,"prosody_l2":0.3,"prosody_weight":0.5,"selected":[[0.0,1.0]]}"#
        );
        let dir = tempfile::tempdir().unwrap();
        p.save(dir.path()).unwrap();
        assert_eq!(TestPredictions::load(dir.path()).unwrap(), p);
    }

    #[test]
    fn folder_names_are_parsed_back() {
        let fold = Path::new("run").join(fold_dir_name(2, "03"));
        assert_eq!(fold, Path::new("run/fold-03-03"));
        let member = member_dir(&fold, 17);
        let name = member.file_name().unwrap().to_str().unwrap();
        assert_eq!(member_seed(name), Some(17));
        assert_eq!(member_seed("fold-03-03"), None);
        assert_eq!(member_seed("seed-x"), None);
        assert_eq!(
            sweep_member_dir(Path::new("s"), 0, "table4-1 (c32, +0)"),
            Path::new("s/01-table4-1__c32___0")
        );
    }

    #[test]
    fn utc_stamp_has_the_documented_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert_eq!(&s[8..9], "-");
        assert!(s.starts_with("20"), "{s}");
    }
}
