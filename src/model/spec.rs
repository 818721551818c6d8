//! The architecture spec: a short string naming the layers of a network, parsed and checked here.
//!
//! ```text
//! spec     := token (whitespace token)*
//! c<N>k<K>[s<S>]   convolution: N filters of K×K, stride S (default 1), TensorFlow SAME padding, ReLU
//! p<K>[s<S>]       max-pool: K×K window, stride S (default K), floor mode
//! +<T>             shortcut: add tap T into the output of the pool just before it (see below)
//! fc<N>            dense layer of N units with ReLU
//! bn               batch normalisation of the convolution just before it, per channel, with ReLU
//! stats            statistics pooling: (C, H, W) -> 2C (mean and std over time of the mean over H)
//! drop<P>          dropout with rate P, 0 ≤ P < 1 (e.g. drop0.3), in training only
//! vec[<P>][w<Q>][fc<N>]
//!                  append the utterance vector (the network's side input) to the features here:
//!                  with dropout of rate P on its entries and of rate Q on whole vectors (a sample
//!                  then learns from its image alone; both in training only), then with a dense ReLU
//!                  projection of the vector alone to N units, e.g. vec, vec0.5, vecw0.3, vecfc64,
//!                  vec0.5w0.3fc64
//! ```
//!
//! `vec` makes the network take a second input per sample, a vector of D values (D is set when the
//! network is laid out, see [`super::InputShape::side`]); it is concatenated after the features
//! that reach it, so it belongs after the convolutional part (after `stats`, or where the map is
//! flattened) and before the `fc` layers: only `fc` and `drop` may follow it, and it comes once.
//!
//! `bn` must directly follow a convolution; that convolution then has no ReLU of its own and the
//! batch norm applies it (conv → BN → ReLU). Batch statistics in training, running averages
//! (momentum 0.1, eps 1e-5) in evaluation; the running statistics are network state saved in
//! checkpoints. `stats` ends the convolutional part: after it come only `vec`, `fc` and `drop` layers, and
//! the dense layers' input is 2C whatever the input's width, so the network accepts spectrograms of
//! any number of frames (see [`super::Network::set_input_width`]). `drop<P>` may follow any layer
//! except that, like every layer, it cannot sit between a pool and its shortcut; its mask is a pure
//! function of (seed, step, layer), so runs stay deterministic and resumable.
//!
//! Taps: tap 0 is the network input (the spectrogram image); tap n is the output of the n-th pool,
//! including whatever shortcuts were added to it. A shortcut's target is the output of the pool it
//! follows (directly, or after other shortcuts), so `+T` is only allowed right after a pool and T must
//! name an earlier tap. The shortcut op averages r×r windows of the source and tiles its channels
//! (target channel c reads source channel c mod C_src); the source's height and width must both be
//! the same whole multiple r of the target's, which is checked once the input size is known
//! ([`super::Plan`]). Convolutions and pools come before the dense layers. The final classifier (a
//! dense layer with one output per class, no ReLU, followed by softmax) is implicit.
//!
//! Example, the paper's best network: `c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 fc716 fc716`.
//! A width-independent one with the newer layers: `c32k3 bn p2 +0 c64k3 bn p2 +0 stats fc128 drop0.3`.

use std::fmt;
use std::str::FromStr;

use crate::{config_err, Error, Result};

/// One layer of a spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerSpec {
    /// `c<filters>k<kernel>[s<stride>]`
    Conv {
        filters: usize,
        kernel: usize,
        stride: usize,
    },
    /// `p<window>[s<stride>]`
    Pool { window: usize, stride: usize },
    /// `+<tap>`
    Shortcut { tap: usize },
    /// `fc<units>`
    Dense { units: usize },
    /// `bn`
    BatchNorm,
    /// `stats`
    StatsPool,
    /// `drop<rate>`
    Dropout { rate: f64 },
    /// `vec[<rate>][w<whole>][fc<units>]`: append the side input, after dropout of `rate` on its
    /// entries and of `whole` on whole vectors and, with `project`, a dense ReLU layer of that many
    /// units over it alone.
    SideInput {
        rate: f64,
        whole: f64,
        project: Option<usize>,
    },
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Conv {
                filters,
                kernel,
                stride: 1,
            } => write!(f, "c{filters}k{kernel}"),
            LayerSpec::Conv {
                filters,
                kernel,
                stride,
            } => write!(f, "c{filters}k{kernel}s{stride}"),
            LayerSpec::Pool { window, stride } if stride == window => write!(f, "p{window}"),
            LayerSpec::Pool { window, stride } => write!(f, "p{window}s{stride}"),
            LayerSpec::Shortcut { tap } => write!(f, "+{tap}"),
            LayerSpec::Dense { units } => write!(f, "fc{units}"),
            LayerSpec::BatchNorm => write!(f, "bn"),
            LayerSpec::StatsPool => write!(f, "stats"),
            LayerSpec::Dropout { rate } => write!(f, "drop{rate}"),
            LayerSpec::SideInput {
                rate,
                whole,
                project,
            } => {
                f.write_str("vec")?;
                if rate > 0.0 {
                    write!(f, "{rate}")?;
                }
                if whole > 0.0 {
                    write!(f, "w{whole}")?;
                }
                if let Some(units) = project {
                    write!(f, "fc{units}")?;
                }
                Ok(())
            }
        }
    }
}

/// A parsed, syntactically valid architecture spec. Each layer remembers the token it came from so
/// later errors (shapes that do not work for a given input size) can point at it.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchSpec {
    text: String,
    layers: Vec<LayerSpec>,
}

impl ArchSpec {
    /// Parse a spec string (not a preset name; see [`ArchSpec::from_name_or_spec`]).
    pub fn parse(text: &str) -> Result<Self> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        if tokens.is_empty() {
            return Err(config_err!(
                "architecture spec is empty: give layers such as `c32k4 p2 +0 fc716` or a preset name"
            ));
        }
        let mut layers = Vec::with_capacity(tokens.len());
        let mut pools = 0usize;
        let mut seen_dense = false;
        let mut seen_stats = false;
        let mut seen_side = false;
        for (i, &tok) in tokens.iter().enumerate() {
            let err = |what: String| token_error(text, i, tok, &what);
            let layer = parse_token(tok).map_err(err)?;
            let conv_pool_or_stats = matches!(
                layer,
                LayerSpec::Conv { .. } | LayerSpec::Pool { .. } | LayerSpec::StatsPool
            );
            // Layers of the convolutional part, which ends at stats (or at vec).
            let convolutional = conv_pool_or_stats
                || matches!(layer, LayerSpec::Shortcut { .. } | LayerSpec::BatchNorm);
            let side = matches!(layer, LayerSpec::SideInput { .. });
            let misplaced = if conv_pool_or_stats && seen_dense {
                Some("convolutions, pools and stats must come before the dense (fc) layers")
            } else if convolutional && seen_stats {
                Some("only fc and drop layers may follow stats (statistics pooling ends the convolutional part)")
            } else if convolutional && seen_side {
                Some("only fc and drop layers may follow vec (the utterance vector is appended to the features of the convolutional part)")
            } else if side && seen_side {
                Some("the utterance vector (vec) can be appended only once")
            } else if side && seen_dense {
                Some("vec must come before the dense (fc) layers: the utterance vector is appended to the pooled features, which the fc layers then read")
            } else {
                None
            };
            if let Some(why) = misplaced {
                return Err(err(why.into()));
            }
            match layer {
                LayerSpec::SideInput { .. } => seen_side = true,
                LayerSpec::StatsPool => seen_stats = true,
                LayerSpec::BatchNorm => {
                    if !matches!(layers.last(), Some(LayerSpec::Conv { .. })) {
                        return Err(err(
                            "bn must directly follow a convolution (c<filters>k<kernel>), which it normalises".into(),
                        ));
                    }
                }
                LayerSpec::Dropout { .. } => {}
                LayerSpec::Pool { .. } => pools += 1,
                LayerSpec::Dense { .. } => seen_dense = true,
                LayerSpec::Shortcut { tap } => {
                    let after_pool = matches!(
                        layers.last(),
                        Some(LayerSpec::Pool { .. } | LayerSpec::Shortcut { .. })
                    );
                    if !after_pool {
                        return Err(err("a shortcut must directly follow a pool (or another shortcut): its target is that pool's output".into()));
                    }
                    if tap >= pools {
                        return Err(err(format!(
                            "tap {tap} does not exist yet: this shortcut adds into the output of pool {pools}, so it can read tap 0 (the input){}",
                            if pools > 1 { format!(" to tap {} (the output of pool {})", pools - 1, pools - 1) } else { String::new() }
                        )));
                    }
                }
                LayerSpec::Conv { .. } => {}
            }
            layers.push(layer);
        }
        Ok(ArchSpec {
            text: text.to_string(),
            layers,
        })
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// The `vec` layer's dropout rate and projection, if the network takes the utterance vector.
    pub fn side_input(&self) -> Option<(f64, Option<usize>)> {
        self.layers.iter().find_map(|l| match *l {
            LayerSpec::SideInput { rate, project, .. } => Some((rate, project)),
            _ => None,
        })
    }

    /// The text this spec was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// An error about layer `index` (its token), for checks made after parsing.
    pub(crate) fn layer_error(&self, index: usize, what: &str) -> Error {
        let tok = self.text.split_whitespace().nth(index).unwrap_or("?");
        token_error(&self.text, index, tok, what)
    }
}

impl FromStr for ArchSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ArchSpec::parse(s)
    }
}

/// The canonical form: tokens separated by single spaces, defaults omitted.
impl fmt::Display for ArchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

fn token_error(spec: &str, index: usize, token: &str, what: &str) -> Error {
    config_err!(
        "architecture spec `{spec}`: token {} `{token}`: {what}",
        index + 1
    )
}

/// Parse the number at the start of `s`; returns it and the rest.
fn number<'a>(s: &'a str, what: &str) -> std::result::Result<(usize, &'a str), String> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return Err(format!("expected the {what} (a number)"));
    }
    let v: usize = s[..end]
        .parse()
        .map_err(|_| format!("the {what} `{}` is too large", &s[..end]))?;
    if v == 0 {
        return Err(format!("the {what} must be at least 1"));
    }
    Ok((v, &s[end..]))
}

fn parse_token(tok: &str) -> std::result::Result<LayerSpec, String> {
    const FORMS: &str = "expected c<filters>k<kernel>[s<stride>], p<window>[s<stride>], +<tap>, fc<units>, bn, stats, drop<rate> or vec[<rate>][w<rate>][fc<units>]";
    let stride = |rest: &str, what: &str| -> std::result::Result<Option<usize>, String> {
        if rest.is_empty() {
            return Ok(None);
        }
        let Some(r) = rest.strip_prefix('s') else {
            return Err(format!("unexpected `{rest}` after the {what}; {FORMS}"));
        };
        let (s, tail) = number(r, "stride")?;
        if !tail.is_empty() {
            return Err(format!("unexpected `{tail}` after the stride; {FORMS}"));
        }
        Ok(Some(s))
    };
    if tok == "bn" {
        Ok(LayerSpec::BatchNorm)
    } else if tok == "stats" {
        Ok(LayerSpec::StatsPool)
    } else if let Some(r) = tok.strip_prefix("vec") {
        const VEC: &str = "the utterance vector is `vec[<rate>][w<rate>][fc<units>]`, e.g. vec, vec0.5, vecw0.3, vecfc64 or vec0.5w0.3fc64";
        let (rate_text, projection) = match r.find("fc") {
            Some(at) => (&r[..at], Some(&r[at + 2..])),
            None => (r, None),
        };
        let (rate_text, whole_text) = match rate_text.find('w') {
            Some(at) => (&rate_text[..at], Some(&rate_text[at + 1..])),
            None => (rate_text, None),
        };
        let parse_rate = |text: &str, what: &str| -> std::result::Result<f64, String> {
            if text.is_empty() {
                return Ok(0.0);
            }
            let valid = text.chars().all(|c| c.is_ascii_digit() || c == '.');
            match text.parse::<f64>() {
                Ok(v) if valid && (0.0..1.0).contains(&v) => Ok(v),
                Ok(_) if valid => Err(format!(
                    "the vector's {what} rate {text} must be at least 0 and below 1"
                )),
                _ => Err(format!("{VEC}; `{text}` is not a decimal {what} rate")),
            }
        };
        let rate = parse_rate(rate_text, "dropout")?;
        let whole = match whole_text {
            Some("") => return Err(format!("{VEC}; `w` needs a rate, e.g. w0.5")),
            Some(t) => parse_rate(t, "whole-vector dropout")?,
            None => 0.0,
        };
        let project = match projection {
            None => None,
            Some(p) => {
                let (units, tail) =
                    number(p, "number of projection units").map_err(|e| format!("{VEC}; {e}"))?;
                if !tail.is_empty() {
                    return Err(format!("{VEC}; unexpected `{tail}` after fc{units}"));
                }
                Some(units)
            }
        };
        Ok(LayerSpec::SideInput {
            rate,
            whole,
            project,
        })
    } else if let Some(r) = tok.strip_prefix("drop") {
        let valid = !r.is_empty() && r.chars().all(|c| c.is_ascii_digit() || c == '.');
        let rate: f64 = match r.parse() {
            Ok(v) if valid => v,
            _ => {
                return Err(format!(
                    "dropout is `drop<rate>` with a decimal rate, e.g. drop0.3; {FORMS}"
                ))
            }
        };
        if !(0.0..1.0).contains(&rate) {
            return Err(format!(
                "the dropout rate {r} must be at least 0 and below 1"
            ));
        }
        Ok(LayerSpec::Dropout { rate })
    } else if let Some(r) = tok.strip_prefix("fc") {
        let (units, tail) = number(r, "number of units")?;
        if !tail.is_empty() {
            return Err(format!("unexpected `{tail}` after fc{units}; {FORMS}"));
        }
        Ok(LayerSpec::Dense { units })
    } else if let Some(r) = tok.strip_prefix('c') {
        let (filters, r) = number(r, "number of filters")?;
        let Some(r) = r.strip_prefix('k') else {
            return Err(format!(
                "expected `k<kernel>` after c{filters}, e.g. c{filters}k4"
            ));
        };
        let (kernel, r) = number(r, "kernel size")?;
        let stride = stride(r, "kernel size")?.unwrap_or(1);
        Ok(LayerSpec::Conv {
            filters,
            kernel,
            stride,
        })
    } else if let Some(r) = tok.strip_prefix('p') {
        let (window, r) = number(r, "pool window")?;
        let stride = stride(r, "pool window")?.unwrap_or(window);
        Ok(LayerSpec::Pool { window, stride })
    } else if let Some(r) = tok.strip_prefix('+') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if end == 0 || end != r.len() {
            return Err(format!(
                "a shortcut is `+<tap>` with a tap number, e.g. +0; {FORMS}"
            ));
        }
        let tap = r.parse().map_err(|_| format!("tap `{r}` is too large"))?;
        Ok(LayerSpec::Shortcut { tap })
    } else {
        Err(format!("unknown token; {FORMS}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_paper_net_and_prints_it_back() {
        let s = "c32k4  p2 +0 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 fc716 fc716";
        let spec = ArchSpec::parse(s).unwrap();
        assert_eq!(spec.layers().len(), 13);
        assert_eq!(
            spec.layers()[0],
            LayerSpec::Conv {
                filters: 32,
                kernel: 4,
                stride: 1
            }
        );
        assert_eq!(
            spec.layers()[1],
            LayerSpec::Pool {
                window: 2,
                stride: 2
            }
        );
        assert_eq!(spec.layers()[2], LayerSpec::Shortcut { tap: 0 });
        assert_eq!(spec.layers()[12], LayerSpec::Dense { units: 716 });
        assert_eq!(
            spec.to_string(),
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let spec = ArchSpec::parse("c8k3s2 p3s2 +0 fc10").unwrap();
        assert_eq!(
            spec.layers()[0],
            LayerSpec::Conv {
                filters: 8,
                kernel: 3,
                stride: 2
            }
        );
        assert_eq!(
            spec.layers()[1],
            LayerSpec::Pool {
                window: 3,
                stride: 2
            }
        );
        assert_eq!(spec.to_string(), "c8k3s2 p3s2 +0 fc10");
    }

    fn err(s: &str) -> String {
        ArchSpec::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_offending_token() {
        let e = err("c32k4 p2 q7 fc10");
        assert!(
            e.contains("token 3 `q7`") && e.contains("unknown token"),
            "{e}"
        );
        let e = err("c32k4 p2 c64 fc10");
        assert!(
            e.contains("token 3 `c64`") && e.contains("k<kernel>"),
            "{e}"
        );
        let e = err("c32k0");
        assert!(
            e.contains("token 1 `c32k0`") && e.contains("at least 1"),
            "{e}"
        );
        let e = err("c32k4 p2x");
        assert!(e.contains("token 2 `p2x`"), "{e}");
        let e = err("c8k3 p2 +1 fc4");
        assert!(
            e.contains("token 3 `+1`") && e.contains("tap 1 does not exist yet"),
            "{e}"
        );
        let e = err("c8k3 p2 c8k3 p2 +2");
        assert!(
            e.contains("token 5 `+2`") && e.contains("tap 1 (the output of pool 1)"),
            "{e}"
        );
        let e = err("c8k3 +0 p2");
        assert!(
            e.contains("token 2 `+0`") && e.contains("directly follow a pool"),
            "{e}"
        );
        let e = err("c8k3 fc4 p2");
        assert!(
            e.contains("token 3 `p2`") && e.contains("before the dense"),
            "{e}"
        );
        assert!(err("   ").contains("empty"));
        let e = ArchSpec::from_name_or_spec("table4-99")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("neither a preset") && e.contains("paper-plain"),
            "{e}"
        );
    }

    #[test]
    fn batch_norm_stats_and_dropout_tokens() {
        let s = "c8k3 bn p2 +0 c16k3s2 bn stats drop0.25 fc32 drop0 fc8";
        let spec = ArchSpec::parse(s).unwrap();
        assert_eq!(spec.layers()[1], LayerSpec::BatchNorm);
        assert_eq!(spec.layers()[6], LayerSpec::StatsPool);
        assert_eq!(spec.layers()[7], LayerSpec::Dropout { rate: 0.25 });
        assert_eq!(spec.layers()[9], LayerSpec::Dropout { rate: 0.0 });
        assert_eq!(spec.to_string(), s);
        assert_eq!(ArchSpec::parse(&spec.to_string()).unwrap(), spec);

        let e = err("c8k3 p2 bn");
        assert!(
            e.contains("token 3 `bn`") && e.contains("directly follow a convolution"),
            "{e}"
        );
        let e = err("bn c8k3");
        assert!(e.contains("token 1 `bn`"), "{e}");
        let e = err("c8k3 stats c8k3");
        assert!(
            e.contains("token 3 `c8k3`") && e.contains("only fc and drop layers may follow stats"),
            "{e}"
        );
        let e = err("c8k3 p2 stats +0");
        assert!(e.contains("token 4 `+0`"), "{e}");
        let e = err("c8k3 fc4 stats");
        assert!(
            e.contains("token 3 `stats`") && e.contains("before the dense"),
            "{e}"
        );
        let e = err("c8k3 stats drop1 fc4");
        assert!(
            e.contains("token 3 `drop1`") && e.contains("below 1"),
            "{e}"
        );
        for bad in ["drop", "drop-0.1", "dropx", "drop0.3.1", "drop1e-2"] {
            let e = err(&format!("c8k3 {bad}"));
            assert!(
                e.contains(&format!("token 2 `{bad}`")) && e.contains("drop<rate>"),
                "{bad}: {e}"
            );
        }
        let e = err("c8k3 bnx");
        assert!(
            e.contains("token 2 `bnx`") && e.contains("unknown token"),
            "{e}"
        );
        let e = err("c8k3 statistics");
        assert!(
            e.contains("token 2 `statistics`") && e.contains("unknown token"),
            "{e}"
        );
    }

    #[test]
    fn vector_tokens_parse_print_back_and_sit_before_the_dense_layers() {
        for (s, rate, project) in [
            ("c8k3 bn stats vec fc16", 0.0, None),
            ("c8k3 bn stats vec0.5 fc16", 0.5, None),
            ("c8k3 bn stats drop0.3 vecfc64 fc16", 0.0, Some(64)),
            ("c8k3 p2 vec0.25fc8 drop0.1 fc16", 0.25, Some(8)),
            ("c8k3 stats vec", 0.0, None),
            ("c8k3 stats vec0.5w0.25fc8 fc16", 0.5, Some(8)),
            ("c8k3 stats vecw0.5 fc16", 0.0, None),
        ] {
            let spec = ArchSpec::parse(s).unwrap();
            assert_eq!(spec.side_input(), Some((rate, project)), "{s}");
            assert_eq!(spec.to_string(), s);
            assert_eq!(ArchSpec::parse(&spec.to_string()).unwrap(), spec);
        }
        assert_eq!(
            ArchSpec::parse("c8k3 stats fc4").unwrap().side_input(),
            None
        );
        // `vec0` is the same layer as `vec`, printed canonically.
        assert_eq!(
            ArchSpec::parse("c8k3 stats vec0 fc4").unwrap().to_string(),
            "c8k3 stats vec fc4"
        );

        let e = err("c8k3 stats fc16 vec");
        assert!(
            e.contains("token 4 `vec`") && e.contains("before the dense (fc) layers"),
            "{e}"
        );
        let e = err("c8k3 vec p2 fc4");
        assert!(
            e.contains("token 3 `p2`") && e.contains("only fc and drop layers may follow vec"),
            "{e}"
        );
        let e = err("c8k3 stats vec vec0.5 fc4");
        assert!(
            e.contains("token 4 `vec0.5`") && e.contains("only once"),
            "{e}"
        );
        let e = err("c8k3 stats vec1 fc4");
        assert!(e.contains("token 3 `vec1`") && e.contains("below 1"), "{e}");
        let e = err("c8k3 stats vecw1.5 fc4");
        assert!(
            e.contains("whole-vector dropout rate") && e.contains("below 1"),
            "{e}"
        );
        for bad in [
            "vecx",
            "vec0.5.1",
            "vecfc",
            "vecfc0",
            "vec0.5fc8x",
            "vec-0.1",
            "vecw",
            "vec0.5wx",
        ] {
            let e = err(&format!("c8k3 stats {bad} fc4"));
            assert!(
                e.contains(&format!("token 3 `{bad}`"))
                    && e.contains("vec[<rate>][w<rate>][fc<units>]"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn shortcut_chains_after_a_pool_are_allowed() {
        let spec = ArchSpec::parse("c4k3 p2 c4k3 p2 +0 +1 fc8").unwrap();
        assert_eq!(spec.layers()[4], LayerSpec::Shortcut { tap: 0 });
        assert_eq!(spec.layers()[5], LayerSpec::Shortcut { tap: 1 });
    }
}
