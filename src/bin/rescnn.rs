//! `rescnn`: spectrogram, info, predict, eval. Each subcommand lives in
//! `rescnn::cli::<name>`; see `rescnn --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = rescnn::cli::Cli::parse();
    match rescnn::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rescnn: {e}");
            ExitCode::FAILURE
        }
    }
}
