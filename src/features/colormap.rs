//! Colormaps as 256-entry lookup tables: intensity in [0, 1] → level `round(255·v)` → colour.
//!
//! Jet is the classic rainbow map the paper's Fig. 2 uses (low energy dark blue, high energy dark
//! red): each channel is piecewise linear in the intensity, with the breakpoints of the usual
//! definition. Gray is the identity. Quantising to 256 levels first makes the network's f32 input
//! and the u8 PNG the same picture.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Colormap {
    /// Three channels, the paper's rainbow map.
    Jet,
    /// One channel, intensity itself.
    Gray,
}

impl Colormap {
    pub fn channels(self) -> usize {
        match self {
            Colormap::Jet => 3,
            Colormap::Gray => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Colormap::Jet => "jet",
            Colormap::Gray => "gray",
        }
    }
}

impl std::str::FromStr for Colormap {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "jet" => Ok(Colormap::Jet),
            "gray" | "grey" => Ok(Colormap::Gray),
            other => Err(crate::config_err!(
                "unknown colormap '{other}': expected 'jet' or 'gray'"
            )),
        }
    }
}

/// Jet's channels as (position, value) breakpoints.
const JET_RED: &[(f32, f32)] = &[
    (0.0, 0.0),
    (0.35, 0.0),
    (0.66, 1.0),
    (0.89, 1.0),
    (1.0, 0.5),
];
const JET_GREEN: &[(f32, f32)] = &[
    (0.0, 0.0),
    (0.125, 0.0),
    (0.375, 1.0),
    (0.64, 1.0),
    (0.91, 0.0),
    (1.0, 0.0),
];
const JET_BLUE: &[(f32, f32)] = &[
    (0.0, 0.5),
    (0.11, 1.0),
    (0.34, 1.0),
    (0.65, 0.0),
    (1.0, 0.0),
];

fn piecewise(points: &[(f32, f32)], v: f32) -> f32 {
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if v <= x1 {
            return y0 + (y1 - y0) * (v - x0) / (x1 - x0);
        }
    }
    points[points.len() - 1].1
}

/// Jet's colour at intensity `v` ∈ [0, 1], each channel in [0, 1].
pub fn jet(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0);
    [
        piecewise(JET_RED, v),
        piecewise(JET_GREEN, v),
        piecewise(JET_BLUE, v),
    ]
}

/// Luma (ITU-R BT.601 weights) of an RGB colour: what "graying" an image turns a pixel into.
pub fn luma(rgb: [f32; 3]) -> f32 {
    0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
}

/// Quantised intensity level of `v` ∈ [0, 1] (values outside are clamped).
#[inline(always)]
pub fn level(v: f32) -> u8 {
    // `as u8` saturates, and NaN becomes 0.
    (v * 255.0 + 0.5) as u8
}

/// The tables of one colormap: per level, the u8 colour, the f32 colour (= u8/255), and for graying
/// the u8 luma of the colour.
#[derive(Clone, Debug)]
pub struct ColorTable {
    pub colormap: Colormap,
    /// `rgb8[level] = [r, g, b]` (gray: all three equal).
    pub rgb8: [[u8; 3]; 256],
    /// `planes[c][level]` = `rgb8[level][c] / 255`.
    pub planes: [[f32; 256]; 3],
    /// Luma of each level's colour, quantised (for gray, the level itself).
    pub gray8: [u8; 256],
    /// `rgb8[level]` packed little-endian into a word (`r | g << 8 | b << 16`), so four pixels can
    /// be written as three words.
    pub rgb32: [u32; 256],
}

impl ColorTable {
    pub fn new(colormap: Colormap) -> Self {
        let mut rgb8 = [[0u8; 3]; 256];
        let mut planes = [[0f32; 256]; 3];
        let mut gray8 = [0u8; 256];
        for q in 0..256 {
            let v = q as f32 / 255.0;
            let rgb = match colormap {
                Colormap::Jet => jet(v),
                Colormap::Gray => [v; 3],
            };
            for c in 0..3 {
                rgb8[q][c] = level(rgb[c]);
                planes[c][q] = rgb8[q][c] as f32 / 255.0;
            }
            gray8[q] = level(luma([planes[0][q], planes[1][q], planes[2][q]]));
        }
        let rgb32 = rgb8.map(|[r, g, b]| r as u32 | (g as u32) << 8 | (b as u32) << 16);
        ColorTable {
            colormap,
            rgb8,
            planes,
            gray8,
            rgb32,
        }
    }
}
