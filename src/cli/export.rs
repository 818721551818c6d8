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
    let ensemble = args.model.load()?;
    let proto = write_model(&ensemble, &args.output)?;
    let graph = proto.graph.as_ref().expect("export builds a graph");
    let model = ensemble.first();
    let (c, h, w) = model.checkpoint.model.input_shape;
    let weights: usize = (ensemble.members.iter())
        .flat_map(|m| &m.checkpoint.params)
        .map(|t| t.data.len())
        .sum();
    println!(
        "{}: {}{} ({} nodes, {weights} weights), input `{}` (N, {c}, {h}, {w}) → `{}` (N, {})",
        args.output.display(),
        model.checkpoint.model.arch,
        match ensemble.members.len() {
            1 => String::new(),
            k => format!(", an ensemble of {k} averaged"),
        },
        graph.node.len(),
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
