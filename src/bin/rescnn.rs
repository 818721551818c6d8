//! `rescnn`: spectrogram (and, as they land, predict, eval, info). See `rescnn --help`.

use clap::Parser;

fn main() {
    let cli = rescnn::cli::Cli::parse();
    if let Err(e) = rescnn::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
