//! Features: the short-time Fourier transform of an utterance ([`stft`]), optionally on a mel scale
//! ([`mel`]), rendered as a spectrogram image ([`render`]) through a colormap ([`colormap`]), as the
//! paper feeds its network: time on x, frequency on y with low frequencies at the bottom, power in
//! dB normalised per utterance, jet colours (or gray).
//!
//! Two stages, so the expensive one is done once per utterance and cached ([`crate::data::cache`]):
//! 1. [`StftPlan::compute`]: samples → [`Spectrogram`] (frames × bins of dB values, frame-major).
//! 2. [`Renderer`]: spectrogram → image intensities in [0, 1] (H × W, row 0 at the top = highest
//!    frequency), then colour: planar f32 CHW in [0, 1] for the network, or interleaved u8 for PNG.
//!    Both come from the same 256-level colour table, so the network sees exactly the PNG's pixels
//!    divided by 255.
//!
//! Everything a pass needs (FFT plan, window, mel weights, resize tables, colour tables, scratch) is
//! prepared once and reused, so rendering allocates nothing per image.

pub mod colormap;
pub mod deltas;
pub mod mel;
pub mod render;
pub mod stft;

use serde::{Deserialize, Serialize};

pub use colormap::Colormap;
pub use render::{Region, Renderer};
pub use stft::{Spectrogram, StftPlan};

use crate::{config_err, Result};

/// How the STFT is computed. Everything that changes the cached [`Spectrogram`] lives here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StftConfig {
    /// Analysis rate; audio at other rates is resampled to it first.
    pub sample_rate: u32,
    /// Hamming window length.
    pub window_ms: f32,
    /// Frame step.
    pub hop_ms: f32,
    /// FFT length (≥ the window length in samples; the frame is zero-padded): `n_fft/2 + 1` bins.
    pub n_fft: usize,
    /// `Some(n)`: n triangular mel bands (HTK mel scale) between `fmin_hz` and `fmax_hz` instead of
    /// the linear FFT bins. Written as 0 when `None`.
    #[serde(with = "zero_is_none")]
    pub mel_bands: Option<usize>,
    pub fmin_hz: f32,
    /// Upper mel edge; `None` is the Nyquist frequency. Written as 0 when `None`.
    #[serde(with = "zero_is_none")]
    pub fmax_hz: Option<f32>,
    /// Power floor before the logarithm, so silence gives a finite dB value (10·log10(1e-10) = -100).
    pub power_floor: f32,
}

/// Serde for the `Option` settings above: `None` is written as 0 and 0 (or null) reads as `None`.
/// TOML has no null, and a configuration file layered over another leaves absent keys unchanged,
/// so "unset" has to be a value: otherwise a run's `config.toml` read back over a base that sets
/// mel bands (`--config run/config.toml`) would quietly keep the base's.
mod zero_is_none {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T, S>(value: &Option<T>, s: S) -> std::result::Result<S::Ok, S::Error>
    where
        T: Default + Serialize,
        S: Serializer,
    {
        match value {
            Some(v) => v.serialize(s),
            None => T::default().serialize(s),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> std::result::Result<Option<T>, D::Error>
    where
        T: Default + PartialEq + Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Option::<T>::deserialize(d)?.filter(|v| *v != T::default()))
    }
}

impl Default for StftConfig {
    fn default() -> Self {
        StftConfig {
            sample_rate: crate::audio::DEFAULT_SAMPLE_RATE,
            window_ms: 25.0,
            hop_ms: 10.0,
            n_fft: 512,
            mel_bands: None,
            fmin_hz: 0.0,
            fmax_hz: None,
            power_floor: 1e-10,
        }
    }
}

impl StftConfig {
    /// Window length in samples.
    pub fn window_len(&self) -> usize {
        (self.window_ms as f64 * 1e-3 * self.sample_rate as f64).round() as usize
    }
    /// Hop in samples.
    pub fn hop_len(&self) -> usize {
        (self.hop_ms as f64 * 1e-3 * self.sample_rate as f64).round() as usize
    }
    /// Rows of the spectrogram: mel bands, or FFT bins 0 ..= n_fft/2.
    pub fn bins(&self) -> usize {
        self.mel_bands.unwrap_or(self.n_fft / 2 + 1)
    }
    /// Frames for `samples` samples: one per hop while a whole window fits, at least one.
    pub fn frames_for(&self, samples: usize) -> usize {
        let (win, hop) = (self.window_len(), self.hop_len());
        if samples <= win {
            1
        } else {
            1 + (samples - win) / hop
        }
    }

    pub fn validate(&self) -> Result<()> {
        let (win, hop) = (self.window_len(), self.hop_len());
        if self.sample_rate < 1000 {
            return Err(config_err!(
                "sample rate {} Hz is too low (expected ≥ 1000 Hz)",
                self.sample_rate
            ));
        }
        if win < 2 {
            return Err(config_err!(
                "window of {} ms is shorter than 2 samples",
                self.window_ms
            ));
        }
        if hop < 1 {
            return Err(config_err!(
                "hop of {} ms is shorter than 1 sample",
                self.hop_ms
            ));
        }
        if self.n_fft < win || self.n_fft < 4 {
            return Err(config_err!(
                "FFT length {} is shorter than the window ({win} samples = {} ms at {} Hz)",
                self.n_fft,
                self.window_ms,
                self.sample_rate
            ));
        }
        if self.power_floor.is_nan() || self.power_floor <= 0.0 {
            return Err(config_err!(
                "power floor must be positive, got {}",
                self.power_floor
            ));
        }
        if let Some(n) = self.mel_bands {
            let nyquist = self.sample_rate as f32 / 2.0;
            let fmax = self.fmax_hz.unwrap_or(nyquist);
            if n < 2 || n > self.n_fft / 2 + 1 {
                return Err(config_err!(
                    "mel bands must be between 2 and n_fft/2+1 = {}, got {n}",
                    self.n_fft / 2 + 1
                ));
            }
            if !(self.fmin_hz >= 0.0 && self.fmin_hz < fmax && fmax <= nyquist) {
                return Err(config_err!(
                    "mel range {} Hz .. {fmax} Hz must satisfy 0 ≤ fmin < fmax ≤ {nyquist} Hz",
                    self.fmin_hz
                ));
            }
        }
        Ok(())
    }
}

/// How the time axis of the image is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeAxis {
    /// The whole utterance, stretched or squeezed to the image width (the paper's images).
    Whole,
    /// One column per frame (the hop rate), cropped or padded with the floor colour to the image
    /// width: a fixed time resolution for utterances of different lengths. Evaluation takes the
    /// first `width` frames; augmentation's random crop picks the window at random.
    Fixed,
}

/// How the spectrogram is drawn as an image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    pub height: usize,
    pub width: usize,
    pub colormap: Colormap,
    pub time_axis: TimeAxis,
    /// Dynamic range shown: per utterance, dB values below `max - top_db` are drawn as the floor
    /// colour, and `[max(min, max - top_db), max]` maps to [0, 1].
    pub top_db: f32,
    /// Δ and ΔΔ channels: 0 = none; N ≥ 1 = two more channels after the colour channel(s), the
    /// regression delta of the image intensity along time over ±N columns and the same delta of
    /// that delta ([`deltas`]; HTK's and ACRNN's N = 2 is the usual choice). With `time_axis =
    /// "fixed"` a column is one STFT frame, so these are the deltas of the (normalised) log-mel
    /// per 10 ms frame; with `"whole"` they are per image column.
    pub delta_window: usize,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            height: 512,
            width: 512,
            colormap: Colormap::Jet,
            time_axis: TimeAxis::Whole,
            top_db: 80.0,
            delta_window: 0,
        }
    }
}

impl ImageConfig {
    /// Network input channels: the colour channel(s), plus Δ and ΔΔ when `delta_window` > 0.
    pub fn channels(&self) -> usize {
        self.colormap.channels() + if self.delta_window > 0 { 2 } else { 0 }
    }
    pub fn validate(&self) -> Result<()> {
        if self.height < 2 || self.width < 2 || self.height > 8192 || self.width > 8192 {
            return Err(config_err!(
                "image size {}×{} (height×width) is out of range (2 ..= 8192 each)",
                self.height,
                self.width
            ));
        }
        if self.top_db.is_nan() || self.top_db <= 0.0 {
            return Err(config_err!(
                "top_db (dynamic range) must be positive, got {}",
                self.top_db
            ));
        }
        if self.delta_window > deltas::MAX_WINDOW {
            return Err(config_err!(
                "delta_window = {} is too wide (expected 0 = no Δ channels, or 1 ..= {})",
                self.delta_window,
                deltas::MAX_WINDOW
            ));
        }
        Ok(())
    }
}

/// The complete feature setting: STFT and image. Serialisable, so a run can record exactly what its
/// network saw; [`SpectrogramConfig::input_shape`] is the model's input.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpectrogramConfig {
    pub stft: StftConfig,
    pub image: ImageConfig,
}

impl SpectrogramConfig {
    /// The paper's setting: 512×512 jet images of the whole utterance at 16 kHz.
    pub fn paper() -> Self {
        Self::default()
    }

    /// The small setting of the built-in synthetic corpus's default run: 64×64 gray.
    pub fn small_gray(size: usize) -> Self {
        SpectrogramConfig {
            stft: StftConfig::default(),
            image: ImageConfig {
                height: size,
                width: size,
                colormap: Colormap::Gray,
                ..ImageConfig::default()
            },
        }
    }

    /// (channels, height, width) of one network input.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        (self.image.channels(), self.image.height, self.image.width)
    }

    pub fn validate(&self) -> Result<()> {
        self.stft.validate()?;
        self.image.validate()
    }
}
