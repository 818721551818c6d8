//! The joint model on the built-in synthetic corpus (CPU backend): a network with a `vec` layer
//! trains end to end on images and utterance vectors together.

mod train_support;

use rescnn::data::EvalTime;
use rescnn::prosody::{ProsodyConfig, ProsodySet};
use train_support::*;

/// A tiny joint network (the basic 29-entry utterance vector, dropped out and projected to 8 units,
/// appended to the pooled statistics) trains in seconds: its training loss falls, the vector path
/// receives gradients (its projection's RMSProp mean squares are non-zero), the checkpoint records
/// the side input's length, and validation and test run over crops (each crop with its utterance's
/// vector), with mixup mixing the vectors and late fusion on top.
#[test]
fn a_tiny_joint_network_trains_on_the_synthetic_corpus() {
    let mut cfg = tiny_config();
    cfg.arch = "c8k3 p2 +0 c16k3 stats vec0.2fc8 fc32".into();
    cfg.prosody_set = ProsodySet::Basic;
    cfg.mixup_alpha = 0.2;
    cfg.prosody_weight = 0.3;
    cfg.eval_time = EvalTime::Crops;
    cfg.iterations = Some(40);
    let dir = temp_dir();
    train(&cfg, dir.path());

    let metrics = metrics_without_time(dir.path());
    let losses: Vec<f64> = metrics.iter().map(|m| m.train_loss).collect();
    eprintln!("training loss per interval: {losses:?}");
    assert!(losses.len() >= 2, "{losses:?}");
    assert!(
        losses[losses.len() - 1] < losses[0],
        "the training loss did not fall: {losses:?}"
    );
    assert!(metrics.iter().all(|m| m.val_wa.is_some()));

    let ck = last_checkpoint(dir.path());
    let width = ProsodyConfig::default().vector_len();
    assert_eq!(ck.model.side_input_len, width);
    let projection = ck
        .params
        .iter()
        .find(|t| t.name == "vec.fc.weight")
        .expect("the projection is saved");
    assert_eq!(projection.dims, vec![8, width]);
    let mean_square = ck
        .optimizer
        .as_ref()
        .unwrap()
        .mean_square
        .iter()
        .find(|t| t.name == "vec.fc.weight")
        .unwrap();
    let moved = mean_square.data.iter().filter(|&&v| v > 0.0).count();
    assert!(
        moved > mean_square.data.len() / 2,
        "only {moved} of {} projection weights got a gradient",
        mean_square.data.len()
    );
}
