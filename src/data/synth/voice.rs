//! The synthetic voice's building blocks: the glottal source pulse, the formant resonator and the
//! vowel formant table that the utterance synthesis strings together.

use std::f32::consts::PI;

/// Vowel formants F1, F2, F3 (Hz) of an average adult male voice: a, e, i, o, u.
pub(super) const VOWELS: [[f32; 3]; 5] = [
    [730.0, 1090.0, 2440.0],
    [530.0, 1840.0, 2480.0],
    [270.0, 2290.0, 3010.0],
    [570.0, 840.0, 2410.0],
    [300.0, 870.0, 2240.0],
];
pub(super) const BANDWIDTHS: [f32; 4] = [80.0, 100.0, 140.0, 250.0];
pub(super) const F4_HZ: f32 = 3500.0;

/// Klatt's two-pole resonator with unit gain at DC.
#[derive(Clone, Copy, Default)]
pub(super) struct Resonator {
    a: f32,
    b: f32,
    c: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    pub(super) fn tune(&mut self, freq: f32, bw: f32, rate: f32) {
        let t = 1.0 / rate;
        self.c = -(-2.0 * PI * bw * t).exp();
        self.b = 2.0 * (-PI * bw * t).exp() * (2.0 * PI * freq * t).cos();
        self.a = 1.0 - self.b - self.c;
    }
    #[inline]
    pub(super) fn step(&mut self, x: f32) -> f32 {
        let y = self.a * x + self.b * self.y1 + self.c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Rosenberg glottal flow over one period, phase in [0, 1): opening 40 %, closing 16 %, closed rest.
pub(super) fn glottal_flow(phase: f32) -> f32 {
    const OPEN: f32 = 0.40;
    const CLOSE: f32 = 0.16;
    if phase < OPEN {
        0.5 * (1.0 - (PI * phase / OPEN).cos())
    } else if phase < OPEN + CLOSE {
        (0.5 * PI * (phase - OPEN) / CLOSE).cos()
    } else {
        0.0
    }
}
