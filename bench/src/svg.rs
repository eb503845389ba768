//! A small line-chart writer: plain SVG text with axes, ticks, grid lines, labels, a legend and
//! one polyline (with a dot per point) per series. Linear or log₁₀ scales on either axis.

use std::fmt::Write;

/// Canvas and plot area, in SVG user units.
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 56.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log10,
}

/// One axis: its range, scale, ticks (value and label) and title.
#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    pub min: f64,
    pub max: f64,
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis over `[min, max]` with explicit ticks.
    pub fn linear(label: &str, min: f64, max: f64, ticks: Vec<(f64, String)>) -> Axis {
        Axis { label: label.into(), scale: Scale::Linear, min, max, ticks }
    }

    /// A log₁₀ axis over the powers of ten around `[lo, hi]` (both positive), a tick at each
    /// power, labelled by `format`.
    pub fn log10(label: &str, lo: f64, hi: f64, format: impl Fn(f64) -> String) -> Axis {
        let lo_exp = lo.max(f64::MIN_POSITIVE).log10().floor() as i32;
        let hi_exp = (hi.max(lo).log10().ceil() as i32).max(lo_exp + 1);
        let ticks = (lo_exp..=hi_exp)
            .map(|e| {
                let v = 10f64.powi(e);
                (v, format(v))
            })
            .collect();
        let (min, max) = (10f64.powi(lo_exp), 10f64.powi(hi_exp));
        Axis { label: label.into(), scale: Scale::Log10, min, max, ticks }
    }

    /// Where `v` falls between the ends of the axis, 0 to 1.
    fn fraction(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => (v - self.min) / (self.max - self.min),
            Scale::Log10 => (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10()),
        }
    }

    fn can_show(&self, v: f64) -> bool {
        v.is_finite() && (self.scale == Scale::Linear || v > 0.0)
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

impl Chart {
    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.fraction(x) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - self.y.fraction(y) * (HEIGHT - TOP - BOTTOM)
    }

    /// The chart as a standalone SVG document. Points a log axis cannot show (zero, negative,
    /// not finite) are left out.
    pub fn render(&self) -> String {
        let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            (x0 + x1) / 2.0,
            escape(&self.title)
        );
        for (v, label) in &self.x.ticks {
            let x = self.px(*v);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                y1 + 16.0,
                escape(label)
            );
        }
        for (v, label) in &self.y.ticks {
            let y = self.py(*v);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        let _ = writeln!(s, r#"<path d="M{x0},{y0} V{y1} H{x1}" fill="none" stroke="black"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            HEIGHT - 14.0,
            escape(&self.x.label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            escape(&self.y.label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|(x, y)| self.x.can_show(*x) && self.y.can_show(*y))
                .map(|&(x, y)| (self.px(x), self.py(y)))
                .collect();
            let list: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                list.join(" ")
            );
            for (x, y) in &points {
                let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#);
            }
            let ly = y0 + 10.0 + 20.0 * i as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                x1 + 12.0,
                x1 + 32.0,
                x1 + 38.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// `1 k`, `10 M`: a count in the units of a log axis.
pub fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{} G", trim(v / 1e9)),
        v if v >= 1e6 => format!("{} M", trim(v / 1e6)),
        v if v >= 1e3 => format!("{} k", trim(v / 1e3)),
        v => trim(v),
    }
}

/// Microseconds as `100 µs`, `1 ms`, `10 s`.
pub fn micros(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{} s", trim(v / 1e6)),
        v if v >= 1e3 => format!("{} ms", trim(v / 1e3)),
        v => format!("{} µs", trim(v)),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            title: "latency <by> percentile & transport".into(),
            x: Axis::linear(
                "percentile",
                0.0,
                4.0,
                vec![(0.0, "0".into()), (2.0, "99%".into()), (4.0, "max".into())],
            ),
            y: Axis::log10("latency", 80.0, 25_000.0, micros),
            series: vec![
                Series {
                    name: "tcp".into(),
                    points: vec![(0.0, 100.0), (2.0, 1000.0), (4.0, 20_000.0)],
                },
                Series {
                    name: "embedded".into(),
                    // The zero cannot be shown on a log axis and is left out.
                    points: vec![(0.0, 90.0), (1.0, 0.0), (2.0, 300.0), (3.0, 9000.0)],
                },
            ],
        }
    }

    /// Every element is closed, in order: a stack of open tags, as an XML parser would keep.
    fn assert_well_formed(svg: &str) {
        let mut open: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("an unclosed tag") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().expect("a tag name").to_string());
            }
            // Attribute values are quoted in pairs.
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in {tag:?}");
            let text = &rest[end + 1..];
            let next = text.find('<').unwrap_or(text.len());
            assert!(!text[..next].contains('>'), "a bare '>' in text {:?}", &text[..next]);
            rest = text;
        }
        assert!(open.is_empty(), "unclosed elements {open:?}");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    }

    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.lines()
            .filter(|l| l.starts_with("<polyline"))
            .map(|l| {
                let points = l.split("points=\"").nth(1).expect("points").split('"').next();
                points
                    .expect("closing quote")
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn renders_a_well_formed_document() {
        let svg = chart().render();
        assert_well_formed(&svg);
        assert!(svg.contains("latency &lt;by&gt; percentile &amp; transport"));
        for label in ["percentile", "latency", "99%", "max", "10 µs", "100 µs", "1 ms", "100 ms"]
        {
            assert!(svg.contains(&format!(">{label}</text>")), "no label {label:?}");
        }
        for name in ["tcp", "embedded"] {
            assert!(svg.contains(&format!(">{name}</text>")), "no legend entry {name:?}");
        }
    }

    #[test]
    fn polyline_points_map_back_to_the_data() {
        let c = chart();
        let svg = c.render();
        let lines = polylines(&svg);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 3);
        assert_eq!(lines[1].len(), 3, "the point at y = 0 is left out");
        let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        for (line, series) in lines.iter().zip(&c.series) {
            let data = series.points.iter().filter(|(_, y)| *y > 0.0);
            for (&(px, py), &(x, y)) in line.iter().zip(data) {
                assert!(
                    (LEFT..=WIDTH - RIGHT).contains(&px) && (TOP..=HEIGHT - BOTTOM).contains(&py)
                );
                // Back from pixels: linear x over [0, 4], log y over [10, 100 000] µs.
                let x_back = (px - LEFT) / w * 4.0;
                let y_back = 10f64.powf(1.0 + (HEIGHT - BOTTOM - py) / h * 4.0);
                assert!((x_back - x).abs() < 0.01, "x {x_back} for {x}");
                assert!((y_back / y - 1.0).abs() < 0.01, "y {y_back} for {y}");
            }
        }
        // A dot per point.
        assert_eq!(svg.matches("<circle ").count(), 6);
    }

    #[test]
    fn log_axes_span_whole_decades() {
        let a = Axis::log10("records/s", 9_000.0, 8_600_000.0, si);
        assert_eq!((a.min, a.max), (1e3, 1e7));
        let labels: Vec<&str> = a.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["1 k", "10 k", "100 k", "1 M", "10 M"]);
        let one = Axis::log10("x", 100.0, 100.0, si);
        assert_eq!((one.min, one.max), (100.0, 1000.0));
        assert_eq!(
            (micros(250.0), micros(1500.0), micros(2e6)),
            ("250 µs".into(), "1.5 ms".into(), "2 s".into())
        );
    }
}
