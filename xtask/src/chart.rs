//! SVG charts of kuai/peer ratios (plotters, SVG backend).

use std::path::Path;

use plotters::prelude::*;

use crate::run::Result;

/// One bar: a label and kuai's ratio over the peer (≥ 1 means kuai wins).
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub label: String,
    pub ratio: f64,
}

const WIN: RGBColor = RGBColor(46, 139, 87);
const LOSS: RGBColor = RGBColor(205, 92, 92);

/// Draws a horizontal bar per row on a log axis centred on 1.0: bars to the
/// right are wins, to the left losses.
pub(crate) fn ratio_chart(path: &Path, title: &str, bars: &[Bar]) -> Result {
    if bars.is_empty() {
        return Ok(());
    }
    let n = bars.len();
    let height = u32::try_from(n)
        .unwrap_or(200)
        .saturating_mul(26)
        .saturating_add(110);
    let (lo, hi) = bars.iter().fold((1.0f64, 1.0f64), |(lo, hi), b| {
        (lo.min(b.ratio), hi.max(b.ratio))
    });
    let lo = (lo / 1.5).max(1e-4);
    let hi = (hi * 1.5).min(1e6);
    let root = SVGBackend::new(path, (980, height)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(420)
            .build_cartesian_2d((lo..hi).log_scale(), (0..(n - 1).max(1)).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("kuai / peer (log scale; > 1 means kuai is better)")
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.2}×"))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bars
                    .get(n.wrapping_sub(1).wrapping_sub(*i))
                    .map(|b| shorten(&b.label, 60))
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .y_labels(n)
            .label_style(("sans-serif", 12))
            .draw()?;
        // The first row is drawn at the top.
        let slot = |i: usize| n - 1 - i;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let i = slot(i);
            let color = if b.ratio >= 1.0 { WIN } else { LOSS };
            let mut rect = Rectangle::new(
                [
                    (1.0, SegmentValue::Exact(i)),
                    (b.ratio, SegmentValue::Exact(i + 1)),
                ],
                color.filled(),
            );
            rect.set_margin(4, 4, 0, 0);
            rect
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
            BLACK.stroke_width(1),
        )))?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let i = slot(i);
            Text::new(
                format!("{:.2}×", b.ratio),
                (b.ratio.max(1.0) * 1.03, SegmentValue::CenterOf(i)),
                ("sans-serif", 11).into_font(),
            )
        }))?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("drawing {}: {e}", path.display()))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_wins_and_losses() {
        let dir = std::env::temp_dir().join(format!("kuai-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("t.svg");
        let bars = vec![
            Bar {
                label: "fast".into(),
                ratio: 2.5,
            },
            Bar {
                label: "slow".into(),
                ratio: 0.5,
            },
        ];
        assert!(ratio_chart(&path, "test", &bars).is_ok());
        let svg = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            svg.contains("<svg") && svg.contains("fast") && svg.contains("2.50×"),
            "{svg}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
