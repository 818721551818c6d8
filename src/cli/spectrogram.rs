//! `rescnn spectrogram IN.wav -o OUT.png [--npy OUT.npy]`: the image the network sees, for a person
//! to look at (PNG, 8 bits per channel) and, with `--npy`, the network's exact f32 input (the input
//! of an exported ONNX model).

use std::path::{Path, PathBuf};

use super::SpectrogramArgs;
use crate::data::cache::round_to_stored_precision;
use crate::features::{Renderer, StftPlan};
use crate::inference::ensemble::Ensemble;
use crate::inference::model_dir::Weights;
use crate::{config_err, Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input WAV file (8/16/24/32-bit integer or 32-bit float PCM, any rate, any channel count).
    pub input: PathBuf,
    /// Output PNG file (the image rounded to 8 bits per channel).
    #[arg(short, long, value_name = "OUT.png")]
    pub output: Option<PathBuf>,
    /// Also (or instead) write the network's exact input: float32 (1, C, H, W), planar, in [0, 1],
    /// as a NumPy .npy file (the input of `rescnn export`'s ONNX model).
    #[arg(long, value_name = "OUT.npy")]
    pub npy: Option<PathBuf>,
    /// Use this trained model's spectrogram settings (the feature options below are then ignored).
    #[arg(long, value_name = "RUN_DIR")]
    pub model: Option<PathBuf>,
    /// Also write the raw utterance vector of --model's prosody branch: float32 (1, D) as a NumPy
    /// .npy file (the `utterance_vector` input of the exported ONNX model).
    #[arg(long, value_name = "OUT.npy", requires = "model")]
    pub vector_npy: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SpectrogramArgs,
}

pub fn run(args: &Args) -> Result<()> {
    if args.output.is_none() && args.npy.is_none() && args.vector_npy.is_none() {
        return Err(config_err!(
            "rescnn spectrogram: nothing to write; give -o OUT.png, --npy OUT.npy and/or --vector-npy OUT.npy"
        ));
    }
    let model = match &args.model {
        // An ensemble's members read the same spectrogram and vector.
        Some(m) => Some(Ensemble::load(m, Weights::Best)?.members.swap_remove(0)),
        None => None,
    };
    let cfg = match &model {
        Some(m) => m.config.spectrogram.clone(),
        None => args.settings.to_config()?,
    };
    crate::audio::check_whole_file_length(&args.input, "rescnn spectrogram")?;
    let original = crate::audio::read_wav(&args.input)?;
    let audio = original.resampled(cfg.stft.sample_rate)?;
    let mut spec = StftPlan::new(&cfg.stft)?.compute(&audio.samples);
    round_to_stored_precision(&mut spec);
    let mut cfg = cfg;
    if let Some(m) = &model {
        // The image the model classifies: for whole-utterance evaluation, as wide as the utterance.
        cfg.image.width = m.eval_width(spec.frames)?;
    }
    let mut renderer = Renderer::new(&cfg.image)?;
    let (c, h, w) = cfg.input_shape();
    let mut written = Vec::new();
    if let Some(png) = &args.output {
        let mut pixels = Vec::new();
        renderer.render_u8(&spec, &mut pixels);
        // The picture holds the colour planes only; Δ/ΔΔ planes are in the .npy.
        write_png(png, &pixels, w, h, cfg.image.colormap.channels())?;
        written.push(png.display().to_string());
    }
    if let Some(npy) = &args.npy {
        let mut chw = vec![0f32; c * h * w];
        renderer.render_chw(&spec, &mut chw);
        crate::export::npy::write(npy, &[1, c, h, w], &chw)?;
        written.push(npy.display().to_string());
    }
    if let (Some(out), Some(model)) = (&args.vector_npy, &model) {
        let corpus = crate::inference::model_dir::files_corpus(
            std::slice::from_ref(&args.input),
            model.classes(),
        )?;
        let vectors = model.vectors(&corpus)?.ok_or_else(|| {
            config_err!(
                "--vector-npy: the model {} has no prosody branch (no utterance vector)",
                model.path.display()
            )
        })?;
        let v = vectors.vector(0);
        crate::export::npy::write(out, &[1, v.len()], v)?;
        written.push(out.display().to_string());
    }
    println!(
        "{}: {:.2} s at {} Hz → {} frames × {} bins → {} ({}×{} height×width, {})",
        args.input.display(),
        original.duration_s(),
        original.sample_rate,
        spec.frames,
        spec.bins,
        written.join(", "),
        h,
        w,
        cfg.image.colormap.name()
    );
    Ok(())
}

/// Write interleaved u8 pixels (1 or 3 channels) as PNG, atomically.
pub fn write_png(
    path: &Path,
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
) -> Result<()> {
    let color = if channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    crate::fsutil::write_atomically(path, |file| {
        let encoder = image::codecs::png::PngEncoder::new(file);
        image::ImageEncoder::write_image(encoder, pixels, width as u32, height as u32, color)
            .map_err(|e| Error::data(path, format!("cannot write PNG: {e}")))
    })
}
