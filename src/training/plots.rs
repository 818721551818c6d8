//! Figures for the run report, as SVG (opens in any browser, text stays crisp, no font files needed):
//! training curves (accuracy and loss against iteration, as the paper's Fig. 5 to 7) and the
//! confusion matrix with counts and row percentages (as its Fig. 8).

use std::fmt::Write;

use super::run_dir::MetricsLine;
use crate::evaluation::metrics::ConfusionMatrix;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// CSS colour.
    pub color: &'static str,
    /// (x, y) points in drawing order; non-finite values are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with labelled axes and a legend.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (e.g. 0 to 100 for accuracy); None fits the data.
    pub y_range: Option<(f64, f64)>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick positions with a 1-2-5 step covering [lo, hi] with about `target` ticks.
fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).max(f64::EPSILON);
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

fn format_tick(v: f64) -> String {
    if v.abs() >= 1e4 && v.fract() == 0.0 {
        format!("{}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl LineChart {
    pub fn to_svg(&self) -> String {
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        let (mut x0, mut x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
        let (mut y0, mut y1) = match self.y_range {
            Some(r) => r,
            None => points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1), b.max(p.1))
            }),
        };
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * plot_w;
        let sy = |y: f64| TOP + plot_h - (y - y0) / (y1 - y0) * plot_h;

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );
        for t in nice_ticks(y0, y1, 6) {
            let y = sy(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                format_tick(t)
            );
        }
        for t in nice_ticks(x0, x1, 6) {
            let x = sx(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 18.0,
                format_tick(t)
            );
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 12.0,
            escape(&self.x_label),
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        for (i, s) in self.series.iter().enumerate() {
            let path: Vec<String> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y.clamp(y0, y1))))
                .collect();
            if path.len() == 1 {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{}" r="3" fill="{}"/>"#,
                    path[0].replace(',', "\" cy=\""),
                    s.color
                );
            } else if !path.is_empty() {
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
                    s.color,
                    path.join(" ")
                );
            }
            let ly = TOP + 14.0 + 20.0 * i as f64;
            let lx = LEFT + plot_w + 14.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                lx + 22.0,
                s.color,
                lx + 28.0,
                ly + 4.0,
                escape(&s.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The confusion matrix as a heat map: rows are true classes, columns predictions; each cell shows
/// the row percentage and the count, shaded by the percentage.
pub fn confusion_svg(title: &str, matrix: &ConfusionMatrix, class_names: &[&str]) -> String {
    let k = matrix.classes();
    let cell = 74.0;
    let (left, top) = (120.0, 70.0);
    let width = left + cell * k as f64 + 20.0;
    let height = top + cell * k as f64 + 60.0;
    let rows = matrix.row_percentages();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{:.1}" y="22" text-anchor="middle" font-size="15">{}</text>
<text x="{:.1}" y="{:.1}" text-anchor="middle">predicted</text>
<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">true</text>"#,
        width / 2.0,
        escape(title),
        left + cell * k as f64 / 2.0,
        height - 12.0,
        top + cell * k as f64 / 2.0
    );
    let name = |i: usize| class_names.get(i).copied().unwrap_or("?");
    for (t, row) in rows.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            top + cell * (t as f64 + 0.5) + 4.0,
            escape(name(t))
        );
        for (p, pct) in row.iter().enumerate() {
            let (x, y) = (left + cell * p as f64, top + cell * t as f64);
            // White to dark blue by percentage; text turns white on dark cells.
            let shade = (pct / 100.0).clamp(0.0, 1.0);
            let (r, g, b) = (
                255.0 - 225.0 * shade,
                255.0 - 185.0 * shade,
                255.0 - 95.0 * shade,
            );
            let ink = if shade > 0.55 { "white" } else { "black" };
            let _ = writeln!(
                svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{cell}" height="{cell}" fill="rgb({r:.0},{g:.0},{b:.0})" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{ink}" font-size="13">{pct:.1}%</text><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{ink}" font-size="11">({})</text>"##,
                x + cell / 2.0,
                y + cell / 2.0 - 2.0,
                x + cell / 2.0,
                y + cell / 2.0 + 14.0,
                matrix.count(t, p)
            );
        }
    }
    for p in 0..k {
        let _ = writeln!(
            svg,
            r#"<text transform="translate({:.1} {:.1}) rotate(-35)" text-anchor="start">{}</text>"#,
            left + cell * (p as f64 + 0.35),
            top - 8.0,
            escape(name(p))
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The training curves of a fold as two SVG charts (accuracy, loss) against iteration.
pub fn curves(metrics: &[MetricsLine], title: &str) -> (String, String) {
    let pts = |f: &dyn Fn(&MetricsLine) -> Option<f64>| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .filter_map(|m| f(m).map(|v| (m.step as f64, v)))
            .collect()
    };
    let acc = LineChart {
        title: format!("{title}: accuracy"),
        x_label: "iteration".into(),
        y_label: "accuracy (%)".into(),
        series: vec![
            Series {
                name: "train (augmented)".into(),
                color: "#1f77b4",
                points: pts(&|m| Some(100.0 * m.train_acc)),
            },
            Series {
                name: "validation WA".into(),
                color: "#d62728",
                points: pts(&|m| m.val_wa.map(|v| 100.0 * v)),
            },
            Series {
                name: "validation UAR".into(),
                color: "#ff7f0e",
                points: pts(&|m| m.val_uar.map(|v| 100.0 * v)),
            },
        ],
        y_range: Some((0.0, 100.0)),
    };
    let loss = LineChart {
        title: format!("{title}: loss"),
        x_label: "iteration".into(),
        y_label: "cross-entropy".into(),
        series: vec![
            Series {
                name: "train (augmented)".into(),
                color: "#1f77b4",
                points: pts(&|m| Some(m.train_loss)),
            },
            Series {
                name: "validation".into(),
                color: "#d62728",
                points: pts(&|m| m.val_loss),
            },
        ],
        y_range: None,
    };
    (acc.to_svg(), loss.to_svg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_use_round_steps_within_range() {
        assert_eq!(
            nice_ticks(0.0, 100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        let t = nice_ticks(0.13, 0.87, 4);
        assert!(t.iter().all(|v| (0.13..=0.87).contains(v)), "{t:?}");
        let want = [0.2, 0.4, 0.6, 0.8];
        assert_eq!(t.len(), want.len(), "{t:?}");
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
    }

    #[test]
    fn chart_draws_every_series_and_escapes_text() {
        let chart = LineChart {
            title: "loss <train & val>".into(),
            x_label: "iteration".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "train".into(),
                    color: "steelblue",
                    points: vec![(0.0, 2.0), (10.0, 1.0), (20.0, f64::NAN)],
                },
                Series {
                    name: "val".into(),
                    color: "darkorange",
                    points: vec![(10.0, 1.5)],
                },
            ],
            y_range: None,
        };
        let svg = chart.to_svg();
        assert!(svg.contains("loss &lt;train &amp; val&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn confusion_cells_show_row_percentages_and_counts() {
        let mut m = ConfusionMatrix::new(2);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1)] {
            m.add(t, p);
        }
        let svg = confusion_svg("test", &m, &["anger", "sadness"]);
        assert!(svg.contains(">66.7%<") && svg.contains(">(2)<"));
        assert!(svg.contains(">33.3%<") && svg.contains(">100.0%<"));
        assert!(svg.contains(">anger<") && svg.contains(">sadness<"));
    }
}
