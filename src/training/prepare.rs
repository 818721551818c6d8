//! What a run trains on, before any network exists: the configured corpus (its folder checked
//! first, for one clear message) and the splits of its protocol.

use super::config::{ProtocolChoice, TrainConfig};
use crate::data::split::{self, SplitOptions};
use crate::data::{Corpus, CorpusSpec, LoadOptions, Split};
use crate::{Error, Result};

/// Load the configured corpus, checking first that its folder or file is there and holds audio.
pub fn load_corpus(cfg: &TrainConfig) -> Result<Corpus> {
    let spec: CorpusSpec = cfg.corpus.parse()?;
    check_data_location(&spec)?;
    spec.load(&LoadOptions {
        skip_bad: cfg.skip_bad,
    })
}

/// One clear message for a data folder (or manifest) that is missing or holds no audio.
pub fn check_data_location(spec: &CorpusSpec) -> Result<()> {
    let (dir, kind, example) = match spec {
        CorpusSpec::Synthetic(_) => return Ok(()),
        CorpusSpec::Emodb(d) => (
            d,
            "EMO-DB",
            "03a01Wa.wav (speaker, text, emotion letter, version)",
        ),
        CorpusSpec::Ravdess { dir, .. } => (dir, "RAVDESS", "03-01-05-01-02-01-12.wav"),
        CorpusSpec::Folders(d) => (d, "folder-per-class", "anger/x.wav, sadness/y.wav"),
        CorpusSpec::Manifest(file) => {
            if !file.is_file() {
                return Err(Error::data(
                    file,
                    "the manifest file does not exist: give a CSV with a path,label,speaker header",
                ));
            }
            return Ok(());
        }
    };
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            format!(
                "the data folder does not exist: point --data at the folder holding the {kind} .wav files"
            ),
        ));
    }
    if crate::data::wav_files(dir)?.is_empty() {
        return Err(Error::data(
            dir,
            format!(
                "the data folder holds no .wav files (searched recursively): expected {kind} files such as {example}"
            ),
        ));
    }
    Ok(())
}

/// The splits of the configured protocol (one for random / speakers, one per speaker for LOSO).
pub fn make_splits(cfg: &TrainConfig, corpus: &Corpus) -> Result<Vec<Split>> {
    let opts = SplitOptions {
        val_fraction: cfg.val_fraction,
        val_speakers: cfg.val_speakers,
        seed: cfg.seed,
    };
    Ok(match cfg.protocol_choice()? {
        ProtocolChoice::Random => vec![split::random(corpus, cfg.test_fraction, &opts)?],
        ProtocolChoice::Speakers(s) => vec![split::held_out_speakers(corpus, &s, &opts)?],
        ProtocolChoice::Loso => split::leave_one_speaker_out(corpus, &opts)?,
    })
}
