//! NumPy's `.npy` format (version 1.0) for little-endian f32 arrays: what `rescnn spectrogram --npy`
//! writes (the network's exact input), and what the ONNX Runtime check reads back.
//!
//! Written by hand rather than with a crate: one dtype, C order, a fixed header layout (magic,
//! version, a Python-dict header padded to a multiple of 64 bytes) is about forty lines, and the
//! reader only has to accept what NumPy itself writes for f32 arrays.

use std::path::Path;

use crate::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The bytes of a `.npy` file holding `values` as a C-order float32 array of `shape`.
pub fn to_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        values.len(),
        "npy: shape {shape:?} does not hold {} values",
        values.len()
    );
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + header length (2) + header, ending in '\n', padded to 64 bytes.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Write `values` as a float32 `.npy` file of `shape`, atomically.
pub fn write(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    crate::fsutil::write_atomic(path, &to_bytes(shape, values))
}

/// Read a little-endian float32, C-order `.npy` file: (shape, values).
pub fn read(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes).map_err(|m| Error::data(path, m))
}

/// Parse `.npy` bytes (version 1.0 to 3.0 headers; only `<f4`, C order).
pub fn from_bytes(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!(".npy version {v} is not supported")),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-text .npy header")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!(
            "expected a little-endian float32 array, header {header}"
        ));
    }
    if header.contains("'fortran_order': True") {
        return Err("expected C order, the array is in Fortran order".into());
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("no shape in the header {header}"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape ({shape_text})"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let data = &bytes[start + len..];
    let count: usize = shape.iter().product();
    if data.len() != 4 * count {
        return Err(format!(
            "shape {shape:?} needs {} bytes of data, the file has {}",
            4 * count,
            data.len()
        ));
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_layout() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = to_bytes(&[1, 2, 3, 4], &values);
        // NumPy's layout: the data starts on a 64-byte boundary, the header ends in a newline.
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        let text = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(
            text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4), }"),
            "{text}"
        );
        assert_eq!(from_bytes(&bytes).unwrap(), (vec![1, 2, 3, 4], values));
        // One dimension is written as NumPy writes it, `(n,)`.
        let one = to_bytes(&[3], &[1.0, 2.0, 3.0]);
        assert!(
            std::str::from_utf8(&one[10..])
                .unwrap_or("")
                .contains("(3,)")
                || one.windows(4).any(|w| w == b"(3,)")
        );
        assert_eq!(from_bytes(&one).unwrap().0, vec![3]);
        assert!(from_bytes(b"not numpy").unwrap_err().contains("magic"));
        let mut short = to_bytes(&[2], &[1.0, 2.0]);
        short.pop();
        assert!(from_bytes(&short).unwrap_err().contains("needs 8 bytes"));
    }
}
