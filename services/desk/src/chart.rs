//! Line charts drawn on the server as SVG: a figure's value for each day of a
//! range, with its target as a dashed line. Pure: values in, markup out. The
//! markup carries no inline style (the desk's CSP allows none), only
//! presentation attributes and classes from `desk.css`, and says what it
//! shows in its `<title>` for screen readers.

use std::fmt::Write as _;

use touchpoint_platform::xml::escape;

/// The drawing's size in user units; the CSS scales it to the page.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
/// Days with a dot each at most (about a quarter).
const MAX_DOTS: usize = 92;
/// Room for the axis labels.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 12.0;
const RIGHT: f64 = 12.0;

/// One chart: a titled series of (day label, value or none) and an optional
/// target.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart<'a> {
    /// What it shows, e.g. "Contact rate, SMS" (escaped here).
    pub title: &'a str,
    /// An id for the element, e.g. `chart-contact-rate`.
    pub id: &'a str,
    /// Each day's label (`2027-01-05`) and value; `None` where the day has
    /// nothing to measure (no attempts that day).
    pub points: &'a [(String, Option<f64>)],
    /// The target, drawn dashed.
    pub target: Option<f64>,
    /// How a value is written on the axis: `%` for a share shown as a
    /// percentage, `h` for hours, "" for a count.
    pub unit: &'a str,
}

/// The chart as an inline `<svg>` element.
pub fn svg(chart: &Chart<'_>) -> String {
    let values: Vec<f64> = chart.points.iter().filter_map(|(_, v)| *v).collect();
    let top_value = values
        .iter()
        .copied()
        .chain(chart.target)
        .fold(0.0_f64, f64::max);
    let max = if chart.unit == "%" {
        1.0
    } else {
        nice_ceiling(top_value)
    };
    let n = chart.points.len().max(2) - 1;
    let x = |i: usize| LEFT + (WIDTH - LEFT - RIGHT) * i as f64 / n as f64;
    let y = |v: f64| HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * (v / max).clamp(0.0, 1.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg id="{}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{}-title"><title id="{}-title">{}</title>"#,
        escape(chart.id),
        escape(chart.id),
        escape(chart.id),
        escape(chart.title)
    );
    // Axes and the top and middle gridlines, labelled.
    let _ = write!(
        out,
        r#"<g class="axis"><line x1="{LEFT}" y1="{}" x2="{}" y2="{}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}"/>"#,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
    for v in [max / 2.0, max] {
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            y(v),
            WIDTH - RIGHT,
            y(v),
            LEFT - 4.0,
            y(v) + 4.0,
            label(v, chart.unit)
        );
    }
    if let (Some((first, _)), Some((last, _))) = (chart.points.first(), chart.points.last()) {
        let _ = write!(
            out,
            r#"<text x="{LEFT}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            HEIGHT - 6.0,
            escape(first),
            WIDTH - RIGHT,
            HEIGHT - 6.0,
            escape(last)
        );
    }
    out.push_str("</g>");
    if let Some(target) = chart.target {
        let _ = write!(
            out,
            r#"<line class="target" x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}" stroke-dasharray="6 4"><title>{}</title></line>"#,
            y(target),
            WIDTH - RIGHT,
            y(target),
            label(target, chart.unit)
        );
    }
    // The line breaks where a day has no value.
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    for (i, (_, value)) in chart.points.iter().enumerate() {
        match value {
            Some(v) => {
                if let Some(segment) = segments.last_mut() {
                    segment.push(format!("{:.1},{:.1}", x(i), y(*v)));
                }
            }
            None => segments.push(Vec::new()),
        }
    }
    for segment in segments.iter().filter(|s| !s.is_empty()) {
        let _ = write!(
            out,
            r#"<polyline class="series" fill="none" points="{}"/>"#,
            segment.join(" ")
        );
    }
    // A dot per day with a value, titled for a pointer or a screen reader;
    // over a longer range the line alone (the CSV has each day's value).
    let dotted = chart.points.len() <= MAX_DOTS;
    for (i, (day, value)) in chart.points.iter().enumerate().filter(|_| dotted) {
        if let Some(v) = value {
            let _ = write!(
                out,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="2.5"><title>{}: {}</title></circle>"#,
                x(i),
                y(*v),
                escape(day),
                label(*v, chart.unit)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// `value` as the axis writes it.
pub fn label(value: f64, unit: &str) -> String {
    match unit {
        "%" => format!("{:.0}%", value * 100.0),
        "h" => format!("{value:.1} h"),
        _ if value.fract() == 0.0 => format!("{value:.0}"),
        _ => format!("{value:.1}"),
    }
}

/// The next round number at or above `value`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|c| *c >= value)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[Option<f64>]) -> Vec<(String, Option<f64>)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("2027-01-{:02}", i + 1), *v))
            .collect()
    }

    #[test]
    fn a_day_without_a_value_breaks_the_line_and_each_value_is_titled() {
        let points = points(&[Some(0.5), Some(0.25), None, Some(1.0)]);
        let drawn = svg(&Chart {
            title: "Contact rate <SMS>",
            id: "chart-contact-rate",
            points: &points,
            target: Some(0.35),
            unit: "%",
        });
        assert_eq!(drawn.matches("<polyline").count(), 2);
        assert_eq!(drawn.matches("<circle").count(), 3);
        assert!(drawn.contains("<title>2027-01-02: 25%</title>"));
        assert!(drawn.contains("Contact rate &lt;SMS&gt;"), "{drawn}");
        assert!(drawn.contains(r#"class="target""#));
        assert!(
            !drawn.contains("style="),
            "no inline style: the CSP forbids it"
        );
    }

    #[test]
    fn counts_get_a_round_top_and_an_empty_range_draws_no_line() {
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        let drawn = svg(&Chart {
            title: "Inbound",
            id: "chart-inbound",
            points: &points(&[None, None]),
            target: None,
            unit: "",
        });
        assert!(!drawn.contains("<polyline"));
    }
}
