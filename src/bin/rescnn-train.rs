//! `rescnn-train`: train and evaluate (see `rescnn-train --help` and the README's "Training").

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use rescnn::training::args::{self, Request};
use rescnn::training::run::{self, RunOutcome};
use rescnn::training::trainer::RunControl;

fn main() -> ExitCode {
    let (args, matches) = match args::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    let control = RunControl {
        stop_at: args.stop_at,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        ..RunControl::default()
    };
    let stop = control.stop.clone();
    // First Ctrl-C, SIGTERM or SIGHUP (ctrlc's `termination` feature): finish the step, checkpoint,
    // exit cleanly. A second one: exit at once.
    let handler = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("\nrescnn-train: second interrupt, exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nrescnn-train: interrupted (Ctrl-C, SIGTERM or SIGHUP); finishing this step and writing a checkpoint (interrupt again to quit now)");
    });
    if let Err(e) = handler {
        eprintln!("rescnn-train: warning: Ctrl-C, SIGTERM and SIGHUP will not checkpoint ({e})");
    }
    let outcome = args::request(&args, &matches).and_then(|req| match req {
        Request::Start { config, out } => run::start(&config, &out, &control),
        Request::Resume { dir } => run::resume(&dir, &control),
    });
    match outcome {
        Ok(RunOutcome::Complete { dir, result }) => {
            let s = &result.selected;
            println!(
                "\ntest accuracy (selected on validation): WA {:.2} %, UAR {:.2} %, macro-F1 {:.2} % over {} utterances{}",
                100.0 * s.wa,
                100.0 * s.uar,
                100.0 * s.macro_f1,
                s.confusion.total(),
                if result.folds.len() > 1 {
                    format!(
                        " ({} folds pooled; per fold WA {:.2} ± {:.2} %, UAR {:.2} ± {:.2} %)",
                        result.folds.len(),
                        100.0 * result.wa_mean_std.0,
                        100.0 * result.wa_mean_std.1,
                        100.0 * result.uar_mean_std.0,
                        100.0 * result.uar_mean_std.1
                    )
                } else {
                    String::new()
                }
            );
            println!(
                "last weights: WA {:.2} %, UAR {:.2} %; {:.1} s, {:.1} images/s on {}",
                100.0 * result.last.wa,
                100.0 * result.last.uar,
                result.provenance.wall_s,
                result.provenance.images_per_s,
                result.provenance.device
            );
            println!("report: {}", dir.join("summary.md").display());
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::SweepComplete { table, .. }) => {
            println!("\nsweep complete: {}", table.display());
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::Interrupted {
            dir,
            fold,
            step,
            total,
        }) => {
            println!(
                "\nstopped: {fold} at step {step} of {total}, checkpoint written.\ncontinue with: rescnn-train --resume {}",
                dir.display()
            );
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("rescnn-train: {e}");
            ExitCode::FAILURE
        }
    }
}
