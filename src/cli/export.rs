//! `rescnn export --model RUN_DIR -o model.onnx`: the trained network as one ONNX graph from the
//! spectrogram image to the class probabilities (see [`crate::export`]).

use std::path::PathBuf;

use crate::data::InputNormMode;
use crate::export::{graph, keys, write_model};
use crate::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: super::ModelChoice,
    /// The ONNX file to write.
    #[arg(short, long, value_name = "FILE.onnx")]
    pub output: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let model = args.model.load_single("rescnn export")?;
    let proto = write_model(&model, &args.output)?;
    let graph = proto.graph.as_ref().expect("export builds a graph");
    let (c, h, w) = model.checkpoint.model.input_shape;
    println!(
        "{}: {} ({} nodes, {} weights), input `{}` (N, {c}, {h}, {w}) → `{}` (N, {})",
        args.output.display(),
        model.checkpoint.model.arch,
        graph.node.len(),
        model
            .checkpoint
            .params
            .iter()
            .map(|t| t.data.len())
            .sum::<usize>(),
        graph::INPUT,
        graph::OUTPUT,
        model.classes().len()
    );
    if model.input_norm_mode() == InputNormMode::Speaker {
        println!(
            "this model normalises per speaker: the graph also takes `{}` and `{}` (C, H, 1); see metadata `{}`",
            graph::SPEAKER_MEAN,
            graph::SPEAKER_STD,
            keys::INPUT_NORM
        );
    }
    Ok(())
}
