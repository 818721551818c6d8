//! The built-in synthetic emotional-speech corpus: the default data set of the trainer and the data of
//! many tests. Deterministic by seed; seven classes named and ordered like EMO-DB's ([`EMOTIONS`]).
//!
//! # The voice: source–filter synthesis
//! - Source: a Rosenberg glottal-flow pulse train, differentiated (lip radiation), with per-period
//!   jitter (period perturbation) and shimmer (amplitude perturbation), plus aspiration noise
//!   (breathiness) gated by the open phase; a one-pole low-pass sets the spectral tilt.
//! - Filter: four cascaded formant resonators (F1–F3 from a five-vowel table, F4 fixed) scaled by the
//!   speaker's vocal-tract length, gliding between consecutive vowels.
//! - Utterance: 4–6 syllables, each an optional consonant (a fricative noise band or a plosive
//!   closure + burst: the unvoiced segments) and a voiced vowel nucleus, with one or two stressed
//!   syllables carrying pitch accents, occasional pauses, a declining pitch baseline, and silence at
//!   both ends.
//!
//! # Emotion → prosody ([`prosody`])
//! Each class sets pitch level and range, speaking rate, loudness, jitter, shimmer, spectral tilt,
//! breathiness and pitch tremor, loosely after the acoustic-correlate literature (anger: high, wide,
//! fast, loud, bright; sadness: low, narrow, slow, quiet, dark, breathy; fear: high, fast, tremulous;
//! boredom: low, flat, slow; disgust: low, slow, irregular voice; happiness: high, wide; neutral:
//! medium). Every utterance then draws its own variation around its class (about a semitone of
//! pitch, ±10 % rate, ±0.08 tilt, …), so classes overlap as real ones do: anger/happiness and
//! boredom/sadness/neutral are the hard pairs.
//!
//! # Not trivially separable
//! The recording level of every utterance varies by ±9 dB (and each speaker by ±3 dB) on top of the
//! class's loudness offset of at most ±4 dB, so mean energy alone classifies poorly (the tests check
//! that a threshold classifier on it stays far from solving the task), while pitch, rate, tilt and
//! voice quality carry the class.
//!
//! # Speakers
//! `speakers` synthetic speakers, alternately lower- and higher-voiced, each with its own base pitch
//! (95–135 Hz or 180–240 Hz), formant scaling (0.92–1.04 or 1.08–1.20), level and breathiness, drawn
//! from the seed. Every speaker says every class equally often, so the corpus is balanced.

mod voice;

use voice::{glottal_flow, Resonator, BANDWIDTHS, F4_HZ, VOWELS};

use std::f32::consts::PI;
use std::path::Path;
use std::sync::Arc;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Corpus, Source, Utterance, EMOTIONS};
use crate::{config_err, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    pub seed: u64,
    pub speakers: usize,
    /// Utterances of each class by each speaker.
    pub per_class_per_speaker: usize,
    /// Scales every utterance's prosodic variation around its class mean (pitch, range, rate,
    /// jitter, shimmer, tilt, breathiness): 1 is the default difficulty, 0 leaves only speaker,
    /// text and recording-level differences (much easier), 2 blurs the classes further. The ±9 dB
    /// level variation is not scaled (images are normalised per utterance anyway).
    pub variation: f32,
    pub sample_rate: u32,
}

impl Default for SynthConfig {
    /// 8 speakers × 7 classes × 8 = 448 utterances of about 1.2 s at 16 kHz.
    fn default() -> Self {
        SynthConfig {
            seed: 0,
            speakers: 8,
            per_class_per_speaker: 8,
            variation: 1.0,
            sample_rate: 16_000,
        }
    }
}

/// A synthetic speaker.
#[derive(Clone, Debug, PartialEq)]
pub struct Speaker {
    pub name: String,
    pub f0_hz: f32,
    pub formant_scale: f32,
    pub gain_db: f32,
    pub breathiness: f32,
}

/// The prosody an emotion asks for (class means; utterances vary around them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prosody {
    /// Pitch level relative to the speaker's base.
    pub f0_scale: f32,
    /// Pitch-accent excursion in semitones.
    pub range_st: f32,
    /// Speaking-rate factor (syllables per second relative to neutral).
    pub rate: f32,
    /// Loudness offset in dB.
    pub gain_db: f32,
    /// Relative period perturbation (standard deviation).
    pub jitter: f32,
    /// Relative amplitude perturbation per period (standard deviation).
    pub shimmer: f32,
    /// One-pole low-pass coefficient on the source: larger is darker (steeper spectral tilt).
    pub tilt: f32,
    /// Aspiration-noise level relative to the voiced source.
    pub breathiness: f32,
    /// Pitch tremor depth in semitones (at 5–7 Hz).
    pub tremor_st: f32,
}

/// The class means, indexed like [`EMOTIONS`].
pub fn prosody(class: usize) -> Prosody {
    let p = |f0_scale, range_st, rate, gain_db, jitter, shimmer, tilt, breathiness, tremor_st| {
        Prosody {
            f0_scale,
            range_st,
            rate,
            gain_db,
            jitter,
            shimmer,
            tilt,
            breathiness,
            tremor_st,
        }
    };
    match EMOTIONS[class] {
        "anger" => p(1.25, 7.0, 1.15, 4.0, 0.015, 0.10, 0.05, 0.04, 0.0),
        "boredom" => p(0.92, 1.8, 0.80, -2.0, 0.006, 0.04, 0.55, 0.06, 0.0),
        "disgust" => p(0.93, 4.0, 0.85, 0.0, 0.030, 0.14, 0.35, 0.12, 0.0),
        "fear" => p(1.35, 4.5, 1.25, 0.0, 0.020, 0.08, 0.30, 0.22, 0.7),
        "happiness" => p(1.20, 8.0, 1.08, 2.0, 0.010, 0.06, 0.15, 0.05, 0.0),
        "sadness" => p(0.88, 2.5, 0.75, -4.0, 0.012, 0.06, 0.60, 0.20, 0.2),
        _ => p(1.00, 3.5, 1.00, 0.0, 0.006, 0.04, 0.35, 0.05, 0.0), // neutral
    }
}

/// RMS of the active part before level offsets: −26 dBFS leaves room for the loudest utterances.
const REFERENCE_RMS: f32 = 0.05;

fn mix_seed(parts: &[u64]) -> u64 {
    // SplitMix64 over the parts: distinct tuples give unrelated streams.
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h = z ^ (z >> 31);
    }
    h
}

/// Standard normal by Box–Muller.
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// The corpus's speakers, drawn from the seed.
pub fn speakers(cfg: &SynthConfig) -> Vec<Speaker> {
    (0..cfg.speakers)
        .map(|k| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[cfg.seed, 1, k as u64]));
            let high = k % 2 == 1;
            Speaker {
                name: format!("syn{:02}", k + 1),
                f0_hz: if high {
                    rng.random_range(180.0..240.0)
                } else {
                    rng.random_range(95.0..135.0)
                },
                formant_scale: if high {
                    rng.random_range(1.08..1.20)
                } else {
                    rng.random_range(0.92..1.04)
                },
                gain_db: rng.random_range(-3.0..3.0),
                breathiness: rng.random_range(0.0..0.06),
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Segment {
    Silence,
    Fricative { centre_hz: f32 },
    Burst,
    Vowel { vowel: usize, accent: f32 },
}

/// One utterance of `speaker` in emotion `class`; `index` numbers that speaker's utterances of the
/// class. Same arguments, same samples.
pub fn utterance(
    cfg: &SynthConfig,
    speaker: &Speaker,
    speaker_index: usize,
    class: usize,
    index: usize,
) -> Vec<f32> {
    let fs = cfg.sample_rate as f32;
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
        cfg.seed,
        2,
        speaker_index as u64,
        class as u64,
        index as u64,
    ]));
    let mean = prosody(class);
    // This utterance's own prosody around the class mean.
    let v = cfg.variation.max(0.0);
    // A uniform draw in [1 - v·spread, 1 + v·spread]; the same number of draws whatever `v`.
    let mut around = |spread: f32| 1.0 + v * spread * rng.random_range(-1.0..=1.0f32);
    let range_st = mean.range_st * around(0.25);
    let rate = mean.rate * around(0.10);
    let jitter = mean.jitter * around(0.30);
    let shimmer = mean.shimmer * around(0.30);
    let breath = mean.breathiness * around(0.30) + speaker.breathiness;
    let tilt = (mean.tilt + v * rng.random_range(-0.08..0.08)).clamp(0.0, 0.9);
    let f0 = speaker.f0_hz * mean.f0_scale * 2f32.powf(v * normal(&mut rng) / 12.0);
    let tremor_hz = rng.random_range(5.0..7.0);
    let level_db = mean.gain_db + speaker.gain_db + rng.random_range(-9.0..9.0);

    // Segment plan: (segment, duration in samples).
    let ms = |x: f32| (x * 1e-3 * fs) as usize;
    let mut plan: Vec<(Segment, usize)> =
        vec![(Segment::Silence, ms(rng.random_range(60.0..120.0)))];
    let syllables = rng.random_range(4..=6usize);
    let stressed = [
        rng.random_range(0..syllables),
        rng.random_range(0..syllables),
    ];
    for s in 0..syllables {
        if rng.random_bool(0.7) {
            if rng.random_bool(0.6) {
                let centre_hz = rng.random_range(2500.0..6000.0f32).min(0.42 * fs);
                plan.push((
                    Segment::Fricative { centre_hz },
                    ms(rng.random_range(50.0..90.0) / rate),
                ));
            } else {
                plan.push((Segment::Silence, ms(rng.random_range(25.0..45.0) / rate)));
                plan.push((Segment::Burst, ms(rng.random_range(10.0..20.0))));
            }
        }
        let is_stressed = stressed.contains(&s);
        let accent = if is_stressed {
            1.0
        } else {
            rng.random_range(-0.25..0.25)
        };
        let dur = rng.random_range(110.0..190.0) * if is_stressed { 1.3 } else { 1.0 } / rate;
        plan.push((
            Segment::Vowel {
                vowel: rng.random_range(0..VOWELS.len()),
                accent,
            },
            ms(dur),
        ));
        if s + 1 < syllables && rng.random_bool(0.3) {
            plan.push((Segment::Silence, ms(rng.random_range(40.0..120.0) / rate)));
        }
    }
    plan.push((Segment::Silence, ms(rng.random_range(60.0..120.0))));
    let total: usize = plan.iter().map(|p| p.1).sum();

    let mut out = Vec::with_capacity(total);
    let mut tract = [Resonator::default(); 4];
    let mut frication = Resonator::default();
    let mut formants = VOWELS[0].map(|f| f * speaker.formant_scale);
    let mut phase = 0.0f32;
    let mut period_f0 = f0;
    let mut period_amp = 1.0f32;
    let mut prev_flow = 0.0f32;
    let mut prev_noise = [0.0f32; 2];
    let mut tilt_state = 0.0f32;
    let mut n_global = 0usize;
    let voiced_total = plan
        .iter()
        .filter(|p| matches!(p.0, Segment::Vowel { .. }))
        .count()
        .max(1);
    let mut vowel_no = 0usize;
    for &(segment, len) in &plan {
        let ramp = ms(12.0).min(len / 2).max(1);
        let target = match segment {
            Segment::Vowel { vowel, .. } => Some(VOWELS[vowel].map(|f| f * speaker.formant_scale)),
            _ => None,
        };
        if let Segment::Fricative { centre_hz } = segment {
            frication.tune(
                centre_hz * speaker.formant_scale.min(1.1),
                0.35 * centre_hz,
                fs,
            );
        }
        let start_formants = formants;
        for i in 0..len {
            let envelope = (i.min(len - 1 - i) as f32 / ramp as f32).min(1.0);
            let noise = rng.random_range(-1.0..1.0f32);
            let mut source = 0.0;
            let mut fric = 0.0;
            match segment {
                Segment::Vowel { accent, .. } => {
                    // Pitch: declining baseline over the utterance, accent bump over the syllable, tremor.
                    let progress = (vowel_no as f32 + i as f32 / len as f32) / voiced_total as f32;
                    let bump = (PI * i as f32 / len as f32).sin();
                    let st = -0.3 * range_st * progress
                        + accent * range_st * bump
                        + mean.tremor_st * (2.0 * PI * tremor_hz * n_global as f32 / fs).sin();
                    let target_f0 = f0 * 2f32.powf(st / 12.0);
                    phase += period_f0 / fs;
                    if phase >= 1.0 {
                        phase -= 1.0;
                        period_f0 = target_f0 * (1.0 + jitter * normal(&mut rng));
                        period_amp = (1.0 + shimmer * normal(&mut rng)).max(0.1);
                    }
                    let flow = glottal_flow(phase) * period_amp;
                    // Differentiated flow (lip radiation), scaled to be independent of the rate.
                    let pulse = (flow - prev_flow) * fs / (8.0 * f0);
                    prev_flow = flow;
                    let open = if phase < 0.56 { 1.0 } else { 0.3 };
                    source = envelope * (pulse + breath * open * noise);
                    // Formant glide over the first 30 % of the vowel.
                    if let Some(t) = target {
                        let g = (i as f32 / (0.3 * len as f32)).min(1.0);
                        for k in 0..3 {
                            formants[k] = start_formants[k] + (t[k] - start_formants[k]) * g;
                        }
                    }
                }
                Segment::Fricative { .. } => {
                    // Twice-differenced noise (+12 dB/octave) into the resonator: a band of hiss
                    // around the centre frequency instead of the resonator's unit gain at DC.
                    let hiss = noise - 2.0 * prev_noise[0] + prev_noise[1];
                    fric = 0.25 * envelope * frication.step(hiss);
                }
                Segment::Burst => fric = 0.9 * (1.0 - i as f32 / len as f32) * noise,
                Segment::Silence => {}
            }
            prev_noise = [noise, prev_noise[0]];
            if i % 32 == 0 {
                for k in 0..3 {
                    tract[k].tune(formants[k], BANDWIDTHS[k], fs);
                }
                tract[3].tune(F4_HZ * speaker.formant_scale, BANDWIDTHS[3], fs);
            }
            tilt_state = (1.0 - tilt) * source + tilt * tilt_state;
            let mut v = tilt_state;
            for r in tract.iter_mut() {
                v = r.step(v);
            }
            out.push(v + fric);
            n_global += 1;
        }
        if matches!(segment, Segment::Vowel { .. }) {
            vowel_no += 1;
        }
    }

    // Level: the active part at the reference RMS, then the utterance's level offset; a faint noise
    // floor so silence is not digital zero.
    let active: Vec<f32> = out.iter().copied().filter(|x| x.abs() > 1e-4).collect();
    let rms = (active.iter().map(|x| x * x).sum::<f32>() / active.len().max(1) as f32)
        .sqrt()
        .max(1e-9);
    let gain = REFERENCE_RMS / rms * 10f32.powf(level_db / 20.0);
    let floor = 10f32.powf(rng.random_range(-90.0..-75.0) / 20.0);
    for x in out.iter_mut() {
        *x = *x * gain + floor * rng.random_range(-1.0..1.0f32);
    }
    let peak = out.iter().fold(0f32, |m, x| m.max(x.abs()));
    if peak > 0.99 {
        out.iter_mut().for_each(|x| *x *= 0.99 / peak);
    }
    out
}

/// Generate the corpus (in parallel; the result does not depend on the thread count). Utterance
/// ids are `<speaker>/<class>_<nn>`.
pub fn generate(cfg: &SynthConfig) -> Result<Corpus> {
    if cfg.speakers == 0 || cfg.per_class_per_speaker == 0 {
        return Err(config_err!(
            "the synthetic corpus needs at least one speaker and one utterance per class"
        ));
    }
    if cfg.sample_rate < 8000 {
        return Err(config_err!(
            "synthetic sample rate must be at least 8000 Hz, got {}",
            cfg.sample_rate
        ));
    }
    let spk = speakers(cfg);
    let jobs: Vec<(usize, usize, usize)> = (0..cfg.speakers)
        .flat_map(|s| {
            (0..EMOTIONS.len())
                .flat_map(move |c| (0..cfg.per_class_per_speaker).map(move |i| (s, c, i)))
        })
        .collect();
    let utterances = jobs
        .into_par_iter()
        .map(|(s, c, i)| {
            let samples = utterance(cfg, &spk[s], s, c, i);
            Utterance {
                id: format!("{}/{}_{:02}", spk[s].name, EMOTIONS[c], i),
                duration_s: samples.len() as f64 / cfg.sample_rate as f64,
                source: Source::Samples {
                    samples: Arc::new(samples),
                    rate: cfg.sample_rate,
                },
                label: c,
                speaker: spk[s].name.clone(),
            }
        })
        .collect();
    Ok(Corpus {
        name: format!("synthetic (seed {}, {} speakers)", cfg.seed, cfg.speakers),
        classes: EMOTIONS.iter().map(|s| s.to_string()).collect(),
        utterances,
    })
}

/// Write the corpus as 16-bit WAV files in the folder-per-class layout
/// (`dir/<class>/<speaker>/<class>_<nn>.wav`), loadable with [`super::folders::load`].
pub fn export(corpus: &Corpus, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    corpus.utterances.par_iter().try_for_each(|u| {
        let audio = u.audio()?;
        let file = u.id.rsplit('/').next().unwrap_or(&u.id);
        let path = dir
            .join(&corpus.classes[u.label])
            .join(&u.speaker)
            .join(format!("{file}.wav"));
        crate::audio::write_wav_i16(&path, &audio.samples, audio.sample_rate)
    })
}
