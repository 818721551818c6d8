//! TrainConfig on its own: protocol names, TOML round trip, and overlays (the layering that
//! config files and the command line share).

use rescnn::training::config::{ProtocolChoice, TrainConfig};

#[test]
fn protocols_parse_and_print() {
    assert_eq!(
        "speakers:15,16".parse::<ProtocolChoice>().unwrap(),
        ProtocolChoice::Speakers(vec!["15".into(), "16".into()])
    );
    assert_eq!(
        "loso".parse::<ProtocolChoice>().unwrap().to_string(),
        "loso"
    );
    let e = "speakers:"
        .parse::<ProtocolChoice>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("speakers:A,B"), "{e}");
}

#[test]
fn toml_round_trip_keeps_every_setting() {
    let mut c = TrainConfig::paper();
    c.epochs = Some(3.5);
    c.iterations = None;
    c.spectrogram.stft.mel_bands = Some(64);
    let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn overlays_replace_only_their_keys_and_epochs_replace_iterations() {
    let base = TrainConfig::default();
    let c = base
        .with_overlay(serde_json::json!({"epochs": 2, "optimizer": {"lr": 0.01}}))
        .unwrap();
    assert_eq!((c.iterations, c.epochs), (None, Some(2.0)));
    assert_eq!(c.optimizer.lr, 0.01);
    assert_eq!(c.optimizer.decay, base.optimizer.decay);
    assert_eq!(c.arch, base.arch);
    let e = base
        .with_overlay(serde_json::json!({"bacth": 3}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bacth"), "{e}");
    let p = base
        .with_overlay(serde_json::json!({"preset": "paper", "batch": 8}))
        .unwrap();
    assert_eq!((p.arch.as_str(), p.batch), ("paper", 8));
}
