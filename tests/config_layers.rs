//! TrainConfig on its own: protocol names, TOML round trip, and overlays (the layering that
//! config files and the command line share).

use rescnn::model::{AdamWConfig, LrSchedule, RmsPropConfig};
use rescnn::training::config::{OptimizerConfig, ProtocolChoice, TrainConfig};

fn rmsprop(c: &TrainConfig) -> RmsPropConfig {
    match c.optimizer {
        OptimizerConfig::RmsProp(o) => o,
        other => panic!("expected RMSProp, got {other:?}"),
    }
}

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
    let base = TrainConfig::paper();
    let c = base
        .with_overlay(serde_json::json!({"epochs": 2, "optimizer": {"lr": 0.01}}))
        .unwrap();
    assert_eq!((c.iterations, c.epochs), (None, Some(2.0)));
    assert_eq!(rmsprop(&c).lr, 0.01);
    assert_eq!(rmsprop(&c).decay, rmsprop(&base).decay);
    assert_eq!(c.arch, base.arch);
    let e = base
        .with_overlay(serde_json::json!({"bacth": 3}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bacth"), "{e}");
    let p = TrainConfig::default()
        .with_overlay(serde_json::json!({"preset": "paper", "batch": 8}))
        .unwrap();
    assert_eq!((p.arch.as_str(), p.batch), ("paper", 8));
}

/// Every configuration written before AdamW existed has an `[optimizer]` table without `kind`:
/// it reads as RMSProp, every value bit for bit, and a partial one takes RMSProp's defaults.
#[test]
fn an_optimizer_table_without_kind_is_rmsprop_bit_for_bit() {
    let c = TrainConfig {
        optimizer: OptimizerConfig::RmsProp(RmsPropConfig {
            lr: 0.1 + 0.2, // not a short decimal: the round trip must keep every bit
            decay: 1.0 / 3.0,
            ..RmsPropConfig::default()
        }),
        ..TrainConfig::default()
    };
    let toml = c.to_toml();
    assert!(toml.contains("kind = \"rmsprop\"\n"), "{toml}");
    let old: TrainConfig = toml::from_str(&toml.replace("kind = \"rmsprop\"\n", "")).unwrap();
    assert_eq!(old, c);
    assert_eq!(rmsprop(&old).lr.to_bits(), (0.1f64 + 0.2).to_bits());
    // A checkpoint's configuration is JSON.
    let mut json = serde_json::to_value(&c).unwrap();
    json["optimizer"].as_object_mut().unwrap().remove("kind");
    assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), c);
    let partial: TrainConfig = toml::from_str("[optimizer]\nlr = 0.01\n").unwrap();
    assert_eq!(
        partial.optimizer,
        OptimizerConfig::RmsProp(RmsPropConfig {
            lr: 0.01,
            ..RmsPropConfig::default()
        })
    );
}

/// `kind = "adamw"` reads AdamW's keys (the rest its defaults) and round-trips; an overlay that
/// changes the kind starts from the new optimizer's defaults; another optimizer's key, an unknown
/// kind and bad values are refused with the key's name.
#[test]
fn adamw_tables_read_round_trip_and_refuse_other_keys() {
    let c: TrainConfig = toml::from_str(
        "[optimizer]\nkind = \"adamw\"\nwarmup_fraction = 0.1\nschedule = \"one-cycle\"\n",
    )
    .unwrap();
    let want = AdamWConfig {
        warmup_fraction: 0.1,
        schedule: LrSchedule::OneCycle,
        ..AdamWConfig::default()
    };
    assert_eq!(c.optimizer, OptimizerConfig::AdamW(want));
    assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml()).unwrap(), c);

    let base = TrainConfig::paper();
    let switched = base
        .with_overlay(serde_json::json!({"optimizer": {"kind": "adamw", "lr": 0.003}}))
        .unwrap();
    assert_eq!(
        switched.optimizer,
        OptimizerConfig::AdamW(AdamWConfig {
            lr: 0.003,
            ..AdamWConfig::default()
        })
    );
    let back = switched
        .with_overlay(serde_json::json!({"optimizer": {"kind": "rmsprop"}}))
        .unwrap();
    assert_eq!(back.optimizer, OptimizerConfig::default());

    let e = base
        .with_overlay(serde_json::json!({"optimizer": {"kind": "adamw", "decay": 0.1}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("decay") && e.contains("adamw"), "{e}");
    let e = base
        .with_overlay(serde_json::json!({"optimizer": {"kind": "adam"}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"rmsprop\" or \"adamw\""), "{e}");
    let mut bad = switched.clone();
    bad.optimizer = OptimizerConfig::AdamW(AdamWConfig {
        warmup_fraction: 1.5,
        ..AdamWConfig::default()
    });
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("warmup_fraction"), "{e}");
}

/// Every configuration file shipped in `configs/` loads, validates, and spells out every setting:
/// read over a base whose values all differ from the defaults' (`--preset paper`), it gives the
/// same configuration as over the defaults, so a change of the trainer's defaults cannot change
/// what the file trains.
#[test]
fn shipped_configuration_files_are_complete() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let over_defaults = TrainConfig::default().with_file(&path).unwrap();
        over_defaults.validate().unwrap();
        let over_paper = TrainConfig::paper().with_file(&path).unwrap();
        assert_eq!(
            over_defaults,
            TrainConfig {
                device: over_defaults.device,
                feature_cache: over_defaults.feature_cache,
                ..over_paper
            },
            "{} leaves settings to the base it is read over",
            path.display()
        );
        seen += 1;
    }
    assert!(seen > 0, "no configuration files in {}", dir.display());
}

/// The one-network recipe file is the `recipe` preset but for the ensemble: one network, not three.
#[test]
fn the_single_network_recipe_file_is_the_preset_with_one_network() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join("recipe-2026-12-single.toml");
    let single = TrainConfig::default().with_file(&path).unwrap();
    let preset = TrainConfig::recipe();
    assert_eq!(preset.ensemble, 3);
    assert_eq!(
        single,
        TrainConfig {
            ensemble: 1,
            device: single.device,
            feature_cache: single.feature_cache,
            ..preset
        }
    );
}
