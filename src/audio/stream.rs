//! Long recordings read a piece at a time: a WAV file's frames mixed to mono as they are decoded
//! ([`WavStream`]), and windows of it at the analysis rate ([`Windows`]), with memory bounded by one
//! window (plus the resampler's context) whatever the file's length.
//!
//! Resampling per window: each window's samples at the analysis rate are computed from the source
//! samples around it, with enough context on both sides (the resampling filter's half length) that
//! every output sample sees the same inputs it would see if the whole file were resampled at once.
//! The window is therefore bit-identical to the same stretch of the whole resampled file (tested
//! in `tests/timeline.rs`), with no state carried between windows and no seams.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::resample::Resampler;
use crate::{Error, Result};

/// A WAV file decoded incrementally and mixed down to mono.
pub struct WavStream {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    channels: usize,
    /// Integer formats: 1 / 2^(bits − 1); `None` for 32-bit float.
    int_scale: Option<f64>,
    sample_rate: u32,
    frames: u64,
    read: u64,
}

impl WavStream {
    pub fn open(path: &Path) -> Result<Self> {
        let reader = hound::WavReader::open(path).map_err(|e| super::wav_error(e, path))?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(Error::data(
                path,
                "WAV header declares 0 channels or a rate of 0 Hz",
            ));
        }
        let int_scale = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, 32) => None,
            (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
                Some(1.0 / (1u64 << (bits - 1)) as f64)
            }
            (_, bits) => {
                return Err(Error::data(
                    path,
                    format!("unsupported sample format ({bits} bits); expected 8/16/24/32-bit integer or 32-bit float PCM"),
                ))
            }
        };
        let frames = reader.duration() as u64;
        if frames == 0 {
            return Err(Error::data(path, "WAV file contains no samples"));
        }
        Ok(WavStream {
            path: path.to_path_buf(),
            channels: spec.channels as usize,
            int_scale,
            sample_rate: spec.sample_rate,
            frames,
            read: 0,
            reader,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    /// Frames (mono samples) the file declares.
    pub fn frames(&self) -> u64 {
        self.frames
    }
    pub fn duration_s(&self) -> f64 {
        self.frames as f64 / self.sample_rate as f64
    }

    /// Append up to `max` mono frames to `out`; returns how many (0 at the end).
    pub fn read_into(&mut self, out: &mut VecDeque<f32>, max: usize) -> Result<usize> {
        let want = (max as u64).min(self.frames - self.read) as usize;
        let inv = 1.0 / self.channels as f32;
        let path = &self.path;
        let fail = |e: hound::Error| Error::data(path, format!("cannot read a sample: {e}"));
        for _ in 0..want {
            let mut sum = 0f32;
            for _ in 0..self.channels {
                let v = match self.int_scale {
                    None => {
                        let v: f32 = self
                            .reader
                            .samples::<f32>()
                            .next()
                            .ok_or_else(|| truncated(path))?
                            .map_err(fail)?;
                        if !v.is_finite() {
                            return Err(Error::data(
                                path,
                                format!("frame {} is not a finite number", self.read),
                            ));
                        }
                        v
                    }
                    Some(scale) => {
                        let v: i32 = self
                            .reader
                            .samples::<i32>()
                            .next()
                            .ok_or_else(|| truncated(path))?
                            .map_err(fail)?;
                        (v as f64 * scale) as f32
                    }
                };
                sum += v;
            }
            out.push_back(if self.channels == 1 { sum } else { sum * inv });
            self.read += 1;
        }
        Ok(want)
    }
}

fn truncated(path: &Path) -> Error {
    Error::data(
        path,
        "truncated: the data ends before the frames the header declares",
    )
}

/// Fixed-length windows of a [`WavStream`] at the analysis rate: window `k` holds analysis-rate
/// samples `[start_k, start_k + len)`. Source samples no later window needs are dropped as it goes.
pub struct Windows {
    stream: WavStream,
    resampler: Option<Resampler>,
    /// (up, down): analysis sample n sits at source time n·down/up.
    ratio: (u64, u64),
    /// Source frames of context on each side of a window (the filter's half length, and one more).
    context: u64,
    /// Source frames held, starting at source frame `buffer_start`.
    buffer: VecDeque<f32>,
    buffer_start: u64,
    /// Total analysis-rate samples of the file.
    total: u64,
}

impl Windows {
    pub fn new(stream: WavStream, rate: u32) -> Result<Self> {
        let resampler = (stream.sample_rate() != rate)
            .then(|| Resampler::new(stream.sample_rate(), rate))
            .transpose()?;
        let (ratio, context, total) = match &resampler {
            None => ((1, 1), 0, stream.frames()),
            Some(r) => {
                let (up, down) = r.ratio();
                (
                    (up as u64, down as u64),
                    r.taps() as u64 / 2 + 1,
                    r.output_len(stream.frames() as usize) as u64,
                )
            }
        };
        Ok(Windows {
            stream,
            resampler,
            ratio,
            context,
            buffer: VecDeque::new(),
            buffer_start: 0,
            total,
        })
    }

    /// Analysis-rate samples in the whole file (what resampling it at once would give).
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn stream(&self) -> &WavStream {
        &self.stream
    }

    /// Analysis-rate samples `[start, start + len)` (clipped to the file's end) into `out`.
    /// Windows must be asked for in order of `start` (earlier source samples are dropped).
    pub fn window(&mut self, start: u64, len: u64, out: &mut Vec<f32>) -> Result<()> {
        let end = (start + len).min(self.total);
        let (up, down) = self.ratio;
        // Source frames that output samples [start, end) read: positions n·down/up ± context. The
        // segment starts on a multiple of `down`, so its own output grid lines up with the file's.
        let first_pos = (start * down / up).saturating_sub(self.context);
        let seg_start = first_pos / down * down;
        let seg_end = ((end * down).div_ceil(up) + self.context + 1).min(self.stream.frames());
        if seg_start < self.buffer_start {
            return Err(crate::config_err!("windows must be read in order"));
        }
        // Drop what no window from `start` on needs, then read up to `seg_end`.
        let drop = ((seg_start - self.buffer_start) as usize).min(self.buffer.len());
        self.buffer.drain(..drop);
        self.buffer_start += drop as u64;
        while self.buffer_start + (self.buffer.len() as u64) < seg_end {
            let need = seg_end - self.buffer_start - self.buffer.len() as u64;
            if self
                .stream
                .read_into(&mut self.buffer, need.min(1 << 16) as usize)?
                == 0
            {
                break;
            }
        }
        out.clear();
        let local = (seg_start - self.buffer_start) as usize;
        let held = self
            .buffer
            .len()
            .min((seg_end - self.buffer_start) as usize);
        let a: Vec<f32> = self.buffer.range(local..held).copied().collect();
        match &self.resampler {
            None => {
                out.extend_from_slice(&a[(start - seg_start) as usize..(end - seg_start) as usize])
            }
            Some(r) => {
                // Output m of the segment is file output m + seg_start·up/down. Samples past the
                // segment count as silence in `process`, as past the file's end they are.
                let y = r.process(&a);
                let offset = seg_start * up / down;
                let lo = (start - offset) as usize;
                let hi = ((end - offset) as usize).min(y.len());
                out.extend_from_slice(&y[lo.min(hi)..hi]);
            }
        }
        Ok(())
    }
}
