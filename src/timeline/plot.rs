//! The timeline as SVG: each class's probability against time (one line per class, at window
//! centres), the background of each window's stretch shaded in its winning class's colour, silent
//! stretches in light gray.

use std::fmt::Write as _;

use super::Timeline;

/// Seven distinguishable colours (Okabe–Ito's colour-blind-safe set plus black), in class order.
const COLORS: [&str; 8] = [
    "#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442",
];

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A 1-2-5 step giving about `target` ticks over `span`.
fn tick_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// The SVG document.
pub fn svg(timeline: &Timeline) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let t_end = timeline.duration_s.max(1e-6);
    let x = |t: f64| LEFT + plot_w * (t / t_end).clamp(0.0, 1.0);
    let y = |p: f64| TOP + plot_h * (1.0 - p.clamp(0.0, 1.0));
    let color = |c: usize| COLORS[c % COLORS.len()];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let name = std::path::Path::new(&timeline.file)
        .file_name()
        .map_or(timeline.file.clone(), |n| n.to_string_lossy().into_owned());
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="14">{}: emotion over time ({} s windows every {} s)</text>"#,
        escape(&name),
        timeline.settings.window_s,
        timeline.settings.hop_s
    );
    // Each window owns the stretch from halfway to its neighbours' centres.
    let centres: Vec<f64> = timeline
        .windows
        .iter()
        .map(|w| 0.5 * (w.start_s + w.end_s))
        .collect();
    for (i, w) in timeline.windows.iter().enumerate() {
        let lo = if i == 0 {
            0.0
        } else {
            0.5 * (centres[i - 1] + centres[i])
        };
        let hi = if i + 1 == centres.len() {
            t_end
        } else {
            0.5 * (centres[i] + centres[i + 1])
        };
        let fill = match &w.probabilities {
            None => "#dddddd".to_string(),
            Some(p) => color(super::argmax(p)).to_string(),
        };
        let opacity = if w.silent { 0.8 } else { 0.22 };
        let _ = writeln!(
            s,
            r#"<rect x="{:.2}" y="{TOP}" width="{:.2}" height="{plot_h}" fill="{fill}" fill-opacity="{opacity}"/>"#,
            x(lo),
            (x(hi) - x(lo)).max(0.0)
        );
    }
    // Axes and ticks.
    let _ = writeln!(
        s,
        r##"<g stroke="#444" fill="none"><rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/></g>"##
    );
    for k in 0..=4 {
        let p = k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}" text-anchor="end">{p:.2}</text>"##,
            LEFT + plot_w,
            y(p),
            y(p),
            LEFT - 6.0,
            y(p) + 4.0
        );
    }
    let step = tick_step(t_end, 10.0);
    let mut t = 0.0;
    while t <= t_end + 1e-9 {
        let label = if step >= 1.0 {
            format!("{t:.0}")
        } else {
            format!("{t:.1}")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            x(t),
            x(t),
            TOP + plot_h,
            TOP + plot_h + 5.0,
            x(t),
            TOP + plot_h + 18.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">probability</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // One line per class through the classified windows (broken at silent ones).
    for (c, class) in timeline.classes.iter().enumerate() {
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (w, &t) in timeline.windows.iter().zip(&centres) {
            match &w.probabilities {
                Some(p) => segments
                    .last_mut()
                    .expect("one segment")
                    .push((x(t), y(p[c]))),
                None => segments.push(Vec::new()),
            }
        }
        for seg in segments.iter().filter(|s| !s.is_empty()) {
            let points: Vec<String> = seg.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.6"/>"#,
                points.join(" "),
                color(c)
            );
        }
        let ly = TOP + 14.0 + 18.0 * c as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="14" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + plot_w + 12.0,
            ly - 9.0,
            color(c),
            LEFT + plot_w + 32.0,
            ly,
            escape(class)
        );
    }
    let ly = TOP + 14.0 + 18.0 * timeline.classes.len() as f64;
    let _ = writeln!(
        s,
        r##"<rect x="{:.1}" y="{:.1}" width="14" height="10" fill="#dddddd"/><text x="{:.1}" y="{:.1}">silent</text>"##,
        LEFT + plot_w + 12.0,
        ly - 9.0,
        LEFT + plot_w + 32.0,
        ly
    );
    s.push_str("</svg>\n");
    s
}
