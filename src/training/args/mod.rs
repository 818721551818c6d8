//! The `rescnn-train` command line. Settings layer: the defaults (or `--preset paper`), then
//! `--config FILE`, then the options given on the command line, which are one more overlay merged
//! exactly like a file ([`TrainConfig::with_overlay`]). Only options actually given go into it
//! (clap's value source tells), so a `--config` file is never silently overridden by a default.
//!
//! A training setting is declared once, in [`TrainConfig`] (doc, type, default, validation); each
//! of its flags is one line of the `config_flags!` list ([`flags`]) naming the key it sets (two
//! flags of one setting, such as `--fixed-time` and `--whole-time`, refuse each other). `--help`
//! shows the no-argument run's settings ([`TrainConfig::no_arguments`]) as defaults, and
//! `--resume` refuses every option but the run-control ones.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde_json::{Map, Value};

use super::config::{AugmentLevel, OptimizerConfig, OptimizerKind, TrainConfig};
use crate::{config_err, Result};

mod flags;

use flags::{at, config_flags, default_settings, default_text, to_json, ConfigFlag};

#[derive(Parser, Debug)]
#[command(
    name = "rescnn-train",
    version,
    about = "Train and evaluate a speech emotion recognition CNN. With no arguments: a small residual \
             network on the built-in synthetic corpus, on the best device available."
)]
pub struct Args {
    /// Data folder (or manifest file) of the corpus; with no --data, the built-in synthetic corpus.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Corpus kind: emodb (default with --data), ravdess, ravdess8, folders, manifest, synthetic[:SEED],
    /// or a manifest .csv file.
    #[arg(long, value_name = "KIND")]
    pub corpus: Option<String>,
    /// Training augmentation: `paper` (random crop, flip, graying, noise points), `full` (those,
    /// SpecAugment masks, and speed/pitch-perturbed variants), `specaugment` (the masks alone), or
    /// `none`.
    #[arg(long, value_enum, conflicts_with = "no_augment")]
    pub augment: Option<AugmentLevel>,
    /// Turn training augmentation off (the same as `--augment none`).
    #[arg(long)]
    pub no_augment: bool,
    /// Start from a named configuration: recipe (our best speaker-independent setting; add --data
    /// and --protocol), paper (everything the paper states) or default.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Settings from a TOML or JSON file (keys as in a run's config.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run directory (default: runs/<UTC time>-<corpus>-<arch>).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint, with its own configuration.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Stop (checkpoint, resumable) once this many iterations of the current fold are done.
    #[arg(long, value_name = "ITER")]
    pub stop_at: Option<u64>,
    /// No progress bar (one line per validation is printed either way).
    #[arg(long)]
    pub no_progress: bool,
}

/// Options that steer a run without changing its configuration (allowed with `--resume`).
const RUN_CONTROL: &[&str] = &["resume", "stop_at", "no_progress", "help", "version"];

/// The command: [`Args`] plus one option per `config_flags!` line ([`flags`]), with the trainer's defaults.
pub fn command() -> clap::Command {
    let defaults = default_settings();
    let mut cmd = Args::command();
    let flags = config_flags();
    for f in &flags {
        let value_name = f.flag.to_ascii_uppercase().replace('-', "_");
        let help = config_flag_help(f, &defaults);
        // The other flags of the same setting: each sets it, so two at once contradict.
        let same_setting = flags
            .iter()
            .filter(|o| o.key == f.key && o.flag != f.flag)
            .map(|o| o.flag);
        let arg = f
            .arg
            .clone()
            .long(f.flag)
            .help(help)
            .conflicts_with_all(same_setting);
        cmd = cmd.arg(match f.switch {
            Some(_) => arg,
            None => arg.value_name(value_name),
        });
    }
    // Setting one length clears the other in a layered configuration; both at once is a mistake.
    cmd.mut_arg("iters", |a| a.conflicts_with("epochs"))
}

fn config_flag_help(f: &ConfigFlag, defaults: &[Value]) -> String {
    match (&f.switch, default_text(defaults, f.key)) {
        (None, Some(d)) => format!("{} [default: {d}]", f.help),
        _ => f.help.to_string(),
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Request {
    Start {
        config: Box<TrainConfig>,
        out: PathBuf,
    },
    Resume {
        dir: PathBuf,
    },
}

/// Parse command-line words (the first is the program name).
pub fn parse<I, T>(words: I) -> std::result::Result<(Args, ArgMatches), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(words)?;
    let args = Args::from_arg_matches(&matches)?;
    Ok((args, matches))
}

fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The request the arguments make.
pub fn request(args: &Args, m: &ArgMatches) -> Result<Request> {
    if let Some(dir) = &args.resume {
        let extra: Vec<String> = command()
            .get_arguments()
            .filter(|a| {
                !RUN_CONTROL.contains(&a.get_id().as_str()) && given(m, a.get_id().as_str())
            })
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        if !extra.is_empty() {
            return Err(config_err!(
                "--resume continues a run with its own config.toml; leave out {}",
                extra.join(", ")
            ));
        }
        return Ok(Request::Resume { dir: dir.clone() });
    }
    let config = config(args, m)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| super::run_dir::default_run_dir(&config.label()));
    Ok(Request::Start {
        config: Box::new(config),
        out,
    })
}

/// The effective configuration: defaults or preset, then the file, then the given options.
pub fn config(args: &Args, m: &ArgMatches) -> Result<TrainConfig> {
    let mut c = match &args.preset {
        Some(p) => TrainConfig::preset(p)?,
        None => TrainConfig::no_arguments(),
    };
    if let Some(file) = &args.config {
        c = c.with_file(file)?;
    }
    let overlay = overlay(args, m)?;
    check_optimizer_flags(&c, &overlay, m)?;
    let c = c.with_overlay(overlay)?;
    c.validate().map_err(|e| name_the_flags(e, m))?;
    Ok(c)
}

/// Refuse an optimizer option the chosen optimizer has no setting for (e.g. `--warmup` with
/// RMSProp), naming the option and the optimizer it belongs to.
fn check_optimizer_flags(base: &TrainConfig, overlay: &Value, m: &ArgMatches) -> Result<()> {
    let kind = match at(overlay, "optimizer.kind") {
        Some(k) => serde_json::from_value(k.clone()).expect("--optimizer parsed as a kind"),
        None => base.optimizer.kind(),
    };
    let settings = |kind| to_json(OptimizerConfig::defaults(kind));
    for f in config_flags() {
        let Some(setting) = f.key.strip_prefix("optimizer.") else {
            continue;
        };
        if !given(m, f.flag) || settings(kind).get(setting).is_some() {
            continue;
        }
        let owners: Vec<String> = [OptimizerKind::RmsProp, OptimizerKind::AdamW]
            .into_iter()
            .filter(|&k| settings(k).get(setting).is_some())
            .map(|k| format!("--optimizer {k}"))
            .collect();
        return Err(config_err!(
            "--{} is not a setting of the {kind} optimizer; it applies with {}",
            f.flag,
            owners.join(" or ")
        ));
    }
    Ok(())
}

/// A validation error that names a setting given as an option says which option.
fn name_the_flags(e: crate::Error, m: &ArgMatches) -> crate::Error {
    let text = e.to_string();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let named: Vec<String> = config_flags()
        .into_iter()
        .filter(|f| given(m, f.flag))
        .filter(|f| {
            let setting = f.key.rsplit('.').next().unwrap_or(f.key);
            text.match_indices(setting).any(|(i, _)| {
                !is_word(text[..i].chars().next_back())
                    && !is_word(text[i + setting.len()..].chars().next())
            })
        })
        .map(|f| format!("--{}", f.flag))
        .collect();
    if named.is_empty() {
        e
    } else {
        config_err!("{text} (given as {})", named.join(", "))
    }
}

/// The options given on the command line as a configuration overlay.
pub fn overlay(args: &Args, m: &ArgMatches) -> Result<Value> {
    let mut overlay = Value::Object(Map::new());
    if let Some(corpus) = corpus(args)? {
        insert(&mut overlay, "corpus", Value::String(corpus));
    }
    let level = if args.no_augment {
        Some(AugmentLevel::None)
    } else {
        args.augment
    };
    if let Some(level) = level {
        let mut c = TrainConfig::default();
        level.apply(&mut c);
        insert(&mut overlay, "augment", to_json(&c.augment));
        insert(
            &mut overlay,
            "waveform_variants",
            to_json(&c.waveform_variants),
        );
    }
    for f in config_flags() {
        let id = f.arg.get_id().as_str();
        if !given(m, id) {
            continue;
        }
        let value = match f.switch {
            Some(v) => v,
            None => m.get_one::<Value>(id).cloned().unwrap_or(Value::Null),
        };
        insert(&mut overlay, f.key, value);
    }
    Ok(overlay)
}

/// The `corpus` setting --data and --corpus give, if any.
fn corpus(args: &Args) -> Result<Option<String>> {
    Ok(match (&args.data, &args.corpus) {
        (Some(dir), kind) => {
            let kind = kind.as_deref().unwrap_or("emodb");
            if kind.to_ascii_lowercase().ends_with(".csv") || kind.starts_with("synthetic") {
                return Err(config_err!(
                    "--corpus {kind} names its own data; leave out --data (or give --corpus emodb|ravdess|ravdess8|folders|manifest)"
                ));
            }
            // Absolute, so the run can be resumed from another folder.
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            Some(format!("{kind}:{}", dir.display()))
        }
        (None, Some(kind)) => {
            if matches!(
                kind.as_str(),
                "ravdess" | "ravdess8" | "folders" | "manifest"
            ) {
                return Err(config_err!(
                    "--corpus {kind} needs --data DIR (the corpus's folder or manifest)"
                ));
            }
            Some(kind.clone())
        }
        (None, None) => None,
    })
}

/// Set dotted `key` of the object `v` to `value`, creating the tables on the way.
fn insert(v: &mut Value, key: &str, value: Value) {
    let mut slot = v;
    for k in key.split('.') {
        slot = slot
            .as_object_mut()
            .expect("overlay tables are objects")
            .entry(k)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    *slot = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn help_line(help: &str, flag: &str) -> String {
        let start = help
            .find(&format!("--{flag} "))
            .unwrap_or_else(|| panic!("--{flag} not in the help:\n{help}"));
        let rest = &help[start..];
        let end = rest.find("\n  -").unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn help_shows_the_trainers_own_defaults() {
        let help = command().render_long_help().to_string();
        let d = TrainConfig::no_arguments();
        let height = help_line(&help, "height");
        assert!(
            height.contains(&format!("[default: {}]", d.spectrogram.image.height)),
            "{height}"
        );
        let batch = help_line(&help, "batch");
        assert!(
            batch.contains(&format!("[default: {}]", d.batch)),
            "{batch}"
        );
        let colormap = help_line(&help, "colormap");
        assert!(colormap.contains("[default: gray]"), "{colormap}");
        // Each optimizer's own default where they differ, from the same source as the training.
        let decay = help_line(&help, "weight-decay");
        let want = format!(
            "[default: {:?} with rmsprop, {:?} with adamw]",
            crate::model::RmsPropConfig::default().weight_decay,
            crate::model::AdamWConfig::default().weight_decay
        );
        assert!(decay.contains(&want), "{decay} lacks {want}");
    }

    #[test]
    fn every_flag_key_is_a_setting_and_given_flags_alone_form_the_overlay() {
        let defaults = default_settings();
        for f in config_flags() {
            assert!(
                defaults.iter().any(|d| at(d, f.key).is_some()),
                "--{} sets unknown key {}",
                f.flag,
                f.key
            );
        }
        let (args, m) =
            parse(["rescnn-train", "--lr", "0.5", "--fixed-time", "--mel", "40"]).unwrap();
        assert_eq!(
            overlay(&args, &m).unwrap(),
            json!({"optimizer": {"lr": 0.5}, "spectrogram": {"stft": {"mel_bands": 40},
                   "image": {"time_axis": "fixed"}}})
        );
        let (args, m) = parse(["rescnn-train", "--whole-time"]).unwrap();
        assert_eq!(
            overlay(&args, &m).unwrap(),
            json!({"spectrogram": {"image": {"time_axis": "whole"}}})
        );
        assert!(parse(["rescnn-train", "--whole-time", "--fixed-time"]).is_err());
    }
}
