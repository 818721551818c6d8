//! Audio in: WAV decoding (through `hound`), mixdown to mono, and band-limited resampling to the
//! analysis rate.
//!
//! Every error names the file and what was wrong with it: not a WAV, truncated, empty, an
//! unsupported sample format, non-finite samples.

pub mod perturb;
pub mod resample;
pub mod stream;

use std::io::{Read, Seek};
use std::path::Path;

pub use perturb::Perturbation;
pub use resample::{resample, Resampler};

use crate::{Error, Result};

/// The default analysis rate: EMO-DB's native rate and the rate the spectrogram defaults assume.
pub const DEFAULT_SAMPLE_RATE: u32 = 16_000;

/// Mono audio: samples in [-1, 1] (integer formats are scaled by 2^(bits-1)) and their rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Audio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }

    /// The same audio at `rate` (band-limited; a no-op copy when the rates agree).
    pub fn resampled(&self, rate: u32) -> Result<Audio> {
        Ok(Audio {
            samples: resample(&self.samples, self.sample_rate, rate)?,
            sample_rate: rate,
        })
    }
}

/// The longest recording `rescnn predict` (one label per file) and `rescnn spectrogram` (one image)
/// accept, in seconds. Both hold the file, its spectrogram and its image in memory at once (about
/// 0.2 MB per second of audio), and one label or one picture for more than ten minutes of speech
/// says little; `rescnn predict --timeline` reads a file of any length window by window.
pub const MAX_WHOLE_FILE_S: f64 = 600.0;

/// Refuse, from its header alone (before decoding), a WAV file longer than [`MAX_WHOLE_FILE_S`];
/// `what` names the command in the message.
pub fn check_whole_file_length(path: impl AsRef<Path>, what: &str) -> Result<()> {
    let path = path.as_ref();
    let info = wav_info(path)?;
    let seconds = info.frames as f64 / info.sample_rate.max(1) as f64;
    if seconds > MAX_WHOLE_FILE_S {
        return Err(Error::data(
            path,
            format!(
                "{seconds:.0} s long; {what} takes recordings up to {MAX_WHOLE_FILE_S:.0} s (the \
                 whole file is held in memory); use `rescnn predict --timeline` for long recordings, \
                 or cut the file"
            ),
        ));
    }
    Ok(())
}

/// What a WAV header says, without decoding the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavInfo {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    pub float: bool,
    /// Frames (samples per channel) the data chunk declares.
    pub frames: u32,
}

/// Decode a WAV file and mix it down to mono at its own sample rate.
pub fn read_wav(path: impl AsRef<Path>) -> Result<Audio> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    decode_wav(std::io::BufReader::new(file), path)
}

/// Decode WAV bytes already in memory; `path` only names the source in errors.
pub fn decode_wav_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Audio> {
    decode_wav(std::io::Cursor::new(bytes), path.as_ref())
}

/// Decode a WAV file, mix it down to mono and resample it to `rate`: what the feature pipeline needs.
pub fn load(path: impl AsRef<Path>, rate: u32) -> Result<Audio> {
    let path = path.as_ref();
    read_wav(path)?
        .resampled(rate)
        .map_err(|e| name_file(e, path))
}

/// Read only the header of a WAV file.
pub fn wav_info(path: impl AsRef<Path>) -> Result<WavInfo> {
    let path = path.as_ref();
    let reader = hound::WavReader::open(path).map_err(|e| wav_error(e, path))?;
    let spec = reader.spec();
    Ok(WavInfo {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        float: spec.sample_format == hound::SampleFormat::Float,
        frames: reader.duration(),
    })
}

/// Write mono samples in [-1, 1] as 16-bit PCM (clipped), atomically (temp file, then rename).
pub fn write_wav_i16(path: impl AsRef<Path>, samples: &[f32], sample_rate: u32) -> Result<()> {
    let path = path.as_ref();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    crate::fsutil::write_atomically(path, |file| {
        let mut w = hound::WavWriter::new(file, spec).map_err(|e| wav_error(e, path))?;
        for &s in samples {
            let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            w.write_sample(v).map_err(|e| wav_error(e, path))?;
        }
        w.finalize().map_err(|e| wav_error(e, path))
    })
}

fn decode_wav<R: Read + Seek>(mut reader: R, path: &Path) -> Result<Audio> {
    let stream_bytes = reader
        .seek(std::io::SeekFrom::End(0))
        .and_then(|n| reader.rewind().map(|()| n))
        .map_err(|e| Error::io(path, e))?;
    let mut reader = hound::WavReader::new(reader).map_err(|e| wav_error(e, path))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        return Err(Error::data(path, "WAV header declares 0 channels"));
    }
    if spec.sample_rate == 0 {
        return Err(Error::data(
            path,
            "WAV header declares a sample rate of 0 Hz",
        ));
    }
    let declared = reader.len() as usize;
    // The header's count is a claim, not a size: reserve no more samples than the bytes there are,
    // so a header declaring gigabytes of samples in a small file allocates what the file holds.
    let bytes_per_sample = usize::from(spec.bits_per_sample.div_ceil(8).max(1));
    let held = usize::try_from(stream_bytes).unwrap_or(usize::MAX) / bytes_per_sample;
    let mut interleaved = Vec::with_capacity(declared.min(held));
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for s in reader.samples::<f32>() {
                interleaved.push(s.map_err(|e| sample_error(e, path, interleaved.len(), declared))?);
            }
            if let Some(i) = interleaved.iter().position(|v| !v.is_finite()) {
                return Err(Error::data(path, format!("sample {i} is not a finite number")));
            }
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            for s in reader.samples::<i32>() {
                let v = s.map_err(|e| sample_error(e, path, interleaved.len(), declared))?;
                interleaved.push((v as f64 * scale) as f32);
            }
        }
        (fmt, bits) => {
            return Err(Error::data(
                path,
                format!(
                    "unsupported sample format: {bits}-bit {}; expected 8/16/24/32-bit integer or 32-bit float PCM",
                    if fmt == hound::SampleFormat::Float { "float" } else { "integer" }
                ),
            ))
        }
    }
    if interleaved.is_empty() {
        return Err(Error::data(path, "WAV file contains no samples"));
    }
    if interleaved.len() % channels != 0 {
        return Err(Error::data(
            path,
            format!(
                "truncated: {} samples is not a whole number of {channels}-channel frames",
                interleaved.len()
            ),
        ));
    }
    let samples = if channels == 1 {
        interleaved
    } else {
        let inv = 1.0 / channels as f32;
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * inv)
            .collect()
    };
    Ok(Audio {
        samples,
        sample_rate: spec.sample_rate,
    })
}

pub(crate) fn wav_error(e: hound::Error, path: &Path) -> Error {
    let message = match e {
        // hound reports a short read as `Other` ("Failed to read enough bytes") or as EOF.
        hound::Error::IoError(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other
            ) =>
        {
            "not a complete WAV file: it ends inside the header".to_string()
        }
        hound::Error::IoError(io) => return Error::io(path, io),
        hound::Error::FormatError(what) => format!("not a valid WAV file: {what}"),
        hound::Error::Unsupported => {
            "unsupported WAV encoding (expected PCM integer or float)".to_string()
        }
        hound::Error::TooWide => "sample width too large for the requested type".to_string(),
        hound::Error::UnfinishedSample => "truncated: the data ends inside a sample".to_string(),
        hound::Error::InvalidSampleFormat => "invalid sample format in the WAV header".to_string(),
    };
    Error::data(path, message)
}

fn sample_error(e: hound::Error, path: &Path, read: usize, declared: usize) -> Error {
    match e {
        hound::Error::IoError(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other
            ) =>
        {
            Error::data(
                path,
                format!(
                "truncated: the header declares {declared} samples but the data ends after {read}"
            ),
            )
        }
        other => wav_error(other, path),
    }
}

/// Attach a file name to an error raised while processing that file's samples.
fn name_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Data {
            path: None,
            message,
        } => Error::data(path, message),
        Error::Config(message) => Error::data(path, message),
        other => other,
    }
}
