//! Sweeps: every input-shortcut placement of a small network (trained here), and the Table IV sweep's
//! members (the paper's rows with their accuracies).

mod train_support;

use rescnn::training::config::SweepKind;
use rescnn::training::run::{self, RunOutcome};
use rescnn::training::sweep::sweep_members;
use train_support::*;

#[test]
fn a_shortcut_sweep_trains_every_placement_and_tabulates_them() {
    let mut cfg = tiny_config();
    cfg.arch = "c8k3 p2 c16k3 p2 fc32".into();
    cfg.iterations = Some(6);
    cfg.eval_every = 6;
    cfg.sweep = Some(SweepKind::Shortcuts);
    let dir = temp_dir();
    let rows = match run::start(&cfg, dir.path(), &quiet()).unwrap() {
        RunOutcome::SweepComplete { rows, table, .. } => {
            let md = std::fs::read_to_string(&table).unwrap();
            for spec in [
                "c8k3 p2 c16k3 p2 fc32",
                "c8k3 p2 +0 c16k3 p2 fc32",
                "c8k3 p2 c16k3 p2 +0 fc32",
                "c8k3 p2 +0 c16k3 p2 +0 fc32",
            ] {
                assert!(
                    md.contains(&format!("`{spec}`")),
                    "{spec} missing from\n{md}"
                );
            }
            assert!(md.contains("| paper (%) |"), "{md}");
            rows
        }
        other => panic!("expected a finished sweep, got {other:?}"),
    };
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert!((0.0..=1.0).contains(&r.result.selected.wa));
        assert_eq!(
            r.result.selected.confusion.total(),
            r.result.folds[0].test_utterances as u64
        );
    }
    // Each member is a run directory of its own; resuming the finished sweep trains nothing new.
    let members: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("summary.md").exists())
        .collect();
    assert_eq!(members.len(), 4);
    match run::resume(dir.path(), &quiet()).unwrap() {
        RunOutcome::SweepComplete { rows: again, .. } => {
            assert_eq!(again.len(), 4);
            assert_eq!(again[1].result.selected, rows[1].result.selected);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_table4_sweep_is_the_papers_eleven_rows() {
    let members = sweep_members(&tiny_config(), SweepKind::Table4).unwrap();
    assert_eq!(members.len(), 11);
    assert_eq!(members[0].name, "table4-1");
    assert_eq!(members[6].paper_accuracy, Some(74.36));
    assert_eq!(members[10].paper_accuracy, Some(60.37));
    for m in &members {
        assert_eq!(rescnn::model::preset(&m.name).unwrap().spec, m.spec);
    }
}
