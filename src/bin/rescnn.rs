//! `rescnn`: the command-line tool. Each subcommand lives in `rescnn::cli::<name>`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rescnn",
    version,
    about = "Speech emotion recognition with multi-level residual CNNs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the compute devices, the NVRTC used at build time and the compiled CUDA kernels.
    Info(rescnn::cli::info::InfoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => rescnn::cli::info::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rescnn: {e}");
            ExitCode::FAILURE
        }
    }
}
