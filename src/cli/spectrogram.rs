//! `rescnn spectrogram IN.wav -o OUT.png`: the image the network sees, for a person to look at.

use std::path::{Path, PathBuf};

use super::SpectrogramArgs;
use crate::features::{Renderer, StftPlan};
use crate::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input WAV file (8/16/24/32-bit integer or 32-bit float PCM, any rate, any channel count).
    pub input: PathBuf,
    /// Output PNG file.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: SpectrogramArgs,
}

pub fn run(args: &Args) -> Result<()> {
    let cfg = args.settings.to_config()?;
    let original = crate::audio::read_wav(&args.input)?;
    let audio = original.resampled(cfg.stft.sample_rate)?;
    let spec = StftPlan::new(&cfg.stft)?.compute(&audio.samples);
    let mut renderer = Renderer::new(&cfg.image)?;
    let mut pixels = Vec::new();
    renderer.render_u8(&spec, &mut pixels);
    write_png(
        &args.output,
        &pixels,
        cfg.image.width,
        cfg.image.height,
        cfg.image.colormap.channels(),
    )?;
    println!(
        "{}: {:.2} s at {} Hz → {} frames × {} bins → {} ({}×{} {})",
        args.input.display(),
        original.duration_s(),
        original.sample_rate,
        spec.frames,
        spec.bins,
        args.output.display(),
        cfg.image.width,
        cfg.image.height,
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
