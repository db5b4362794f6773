//! The console's charts: SVG drawn on the server by `plotters`, put into the page as it is.
//! No script and no font files: the SVG names a generic font and the browser sets the text.
//! Every value drawn is a number or a label of ours, never a string from the store.

use std::time::{Duration, UNIX_EPOCH};

use plotters::prelude::*;

/// A line: its legend label, colour and points (Unix seconds, value).
pub(super) struct Line<'a> {
    pub(super) label: &'a str,
    pub(super) color: RGBColor,
    pub(super) points: Vec<(f64, f64)>,
}

/// An interval around a line: (Unix seconds, lower, upper).
pub(super) type Band = Vec<(f64, f64, f64)>;

pub(super) const BLUE_: RGBColor = RGBColor(0x1f, 0x5f, 0xa8);
pub(super) const GREY: RGBColor = RGBColor(0x77, 0x77, 0x77);
pub(super) const ORANGE: RGBColor = RGBColor(0xc0, 0x6a, 0x00);
pub(super) const RED_: RGBColor = RGBColor(0xb3, 0x26, 0x1e);

/// A chart over time from `span.0` to `span.1` (Unix seconds), the y axis from 0 to above
/// the highest value, with an optional band, lines, and a dashed limit.
pub(super) struct TimeChart<'a> {
    pub(super) caption: &'a str,
    pub(super) span: (f64, f64),
    pub(super) y_label: fn(&f64) -> String,
    pub(super) band: Option<(Band, RGBColor)>,
    pub(super) lines: Vec<Line<'a>>,
    pub(super) limit: Option<f64>,
}

impl TimeChart<'_> {
    pub(super) fn svg(&self) -> String {
        let mut svg = String::new();
        if let Err(error) = self.draw(&mut svg) {
            tracing::warn!(%error, caption = self.caption, "chart not drawn");
            return String::new();
        }
        svg
    }

    fn draw(&self, svg: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        let highest = self
            .lines
            .iter()
            .flat_map(|line| line.points.iter().map(|p| p.1))
            .chain(self.band.iter().flat_map(|(band, _)| band.iter().map(|b| b.2)))
            .chain(self.limit)
            .fold(0.0_f64, f64::max);
        let y_max = if highest > 0.0 { highest * 1.15 } else { 1.0 };
        let (start, end) = (self.span.0, self.span.1.max(self.span.0 + 1.0));
        let root = SVGBackend::with_string(svg, (720, 220)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.caption, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d(start..end, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&clock)
            .y_label_formatter(&self.y_label)
            .light_line_style(WHITE)
            .draw()?;
        if let Some((band, color)) = &self.band {
            let outline = band.iter().map(|b| (b.0, b.2)).chain(band.iter().rev().map(|b| (b.0, b.1)));
            chart.draw_series(std::iter::once(Polygon::new(outline.collect::<Vec<_>>(), color.mix(0.18))))?;
        }
        if let Some(limit) = self.limit {
            chart
                .draw_series(DashedLineSeries::new([(start, limit), (end, limit)], 6, 4, RED_.stroke_width(1)))?
                .label("limit")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED_));
        }
        for line in &self.lines {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))?
                .label(line.label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(GREY).draw()?;
        root.present()?;
        Ok(())
    }
}

/// A small line without axes, for a table cell: `points` over `span`, from 0 up.
pub(super) fn sparkline(points: &[(f64, f64)], span: (f64, f64), color: RGBColor) -> String {
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let highest = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
        let y_max = if highest > 0.0 { highest * 1.1 } else { 1.0 };
        let root = SVGBackend::with_string(&mut svg, (120, 28)).into_drawing_area();
        let mut chart =
            ChartBuilder::on(&root).margin(2).build_cartesian_2d(span.0..span.1.max(span.0 + 1.0), 0.0..y_max)?;
        chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(1)))?;
        // One bucket alone is a point, not a line: a dot shows it.
        if let [point] = points {
            chart.draw_series(std::iter::once(Circle::new(*point, 2, color.filled())))?;
        }
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(error) => {
            tracing::warn!(%error, "sparkline not drawn");
            String::new()
        }
    }
}

/// `HH:MM`, UTC.
fn clock(secs: &f64) -> String {
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a time on the axis, in range")]
    let at = UNIX_EPOCH + Duration::from_secs(secs.max(0.0) as u64);
    humantime::format_rfc3339_seconds(at).to_string().get(11..16).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_a_band_a_limit_and_a_legend() {
        let chart = TimeChart {
            caption: "divergence",
            span: (1_795_000_000.0, 1_795_003_600.0),
            y_label: |v| format!("{v:.2}"),
            band: Some((vec![(1_795_000_000.0, 0.01, 0.03), (1_795_003_600.0, 0.0, 0.02)], BLUE_)),
            lines: vec![Line {
                label: "candidate",
                color: BLUE_,
                points: vec![(1_795_000_000.0, 0.02), (1_795_003_600.0, 0.01)],
            }],
            limit: Some(0.01),
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polygon") && svg.contains("<polyline"), "{svg}");
        assert!(svg.contains(">candidate<") || svg.contains("candidate\n"), "the legend names the line");
        assert_eq!((clock(&0.0), clock(&3_660.0)), ("00:00".to_owned(), "01:01".to_owned()));
        assert!(sparkline(&[(0.0, 1.0), (1.0, 2.0)], (0.0, 1.0), GREY).contains("<polyline"));
    }
}
