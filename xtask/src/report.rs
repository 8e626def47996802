//! Rendering results.json into REPORT.md and charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use kuai_benches::{Better, Record};

use crate::bench::Results;
use crate::chart::{Bar, ratio_chart};
use crate::run::Result;

pub(crate) fn write(out_dir: &Path, results: &Results) -> Result {
    let mut by_section: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in &results.records {
        by_section.entry(r.section.as_str()).or_default().push(r);
    }
    // Keep the order in which sections ran (chapter order), then any extra
    // section names a binary recorded under.
    let mut order: Vec<&str> = results.sections.iter().map(|s| s.name.as_str()).collect();
    for name in by_section.keys() {
        if !order.contains(name) {
            order.push(name);
        }
    }
    order.retain(|n| by_section.contains_key(n));

    let m = &results.machine;
    let mut md = String::new();
    let _ = writeln!(md, "# kuai benchmark report\n");
    let _ = writeln!(
        md,
        "Generated {} UTC by `cargo xtask bench{}{}` in {:.0} s. Regenerate with the same command; \
         the machine-readable rows are in [`results.json`](results.json).\n",
        utc(results.generated_unix),
        if results.quick { " --quick" } else { "" },
        if results.services { " --services" } else { "" },
        results.total_seconds
    );
    if results.quick {
        let _ = writeln!(
            md,
            "> **Quick mode**: smaller sizes and fewer repeats; numbers are indicative only.\n"
        );
    }
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(
        md,
        "| cores | CPU | memory | kernel | rustc | load average at the end |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {} | {} | {} GiB | {} | {} | {} |\n",
        m.cores, m.cpu, m.memory_gib, m.kernel, m.rustc, m.load_average
    );
    let _ = writeln!(
        md,
        "**How to read this.** Every row measures kuai and a named peer *in the same run* on this machine. \
         `kuai / peer` is how many times better kuai is (peer ÷ kuai when lower is better, kuai ÷ peer when \
         higher is better): ≥ 1 means kuai wins. The *seed* column is the figure the seed article published \
         on its own hardware, for orientation only. This machine is shared and noisy: compare ratios, not \
         absolute numbers.\n"
    );

    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "| section | rows | kuai ahead (ratio ≥ 1) | geometric mean ratio | errors | seconds |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut summary_bars = Vec::new();
    for name in &order {
        let rows = &by_section[name];
        let ratios: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.ratio)
            .filter(|r| *r > 0.0)
            .collect();
        let wins = ratios.iter().filter(|r| **r >= 1.0).count();
        let errors = rows.iter().filter(|r| r.error.is_some()).count();
        let gmean = geometric_mean(&ratios);
        let secs = results
            .sections
            .iter()
            .find(|s| s.name == *name)
            .map(|s| format!("{:.0}", s.seconds));
        let _ = writeln!(
            md,
            "| [{name}](#{name}) | {} | {wins} / {} | {} | {errors} | {} |",
            rows.len(),
            ratios.len(),
            gmean.map_or("–".into(), |g| format!("{g:.2}×")),
            secs.unwrap_or_else(|| "–".into())
        );
        if let Some(g) = gmean {
            summary_bars.push(Bar {
                label: (*name).to_string(),
                ratio: g,
            });
        }
    }
    if !summary_bars.is_empty() {
        ratio_chart(
            &out_dir.join("summary.svg"),
            "kuai / peer, geometric mean per section",
            &summary_bars,
        )?;
        let _ = writeln!(md, "\n![geometric mean ratio per section](summary.svg)\n");
    }

    for name in &order {
        let rows = &by_section[name];
        let _ = writeln!(md, "\n## {name}\n");
        let bars: Vec<Bar> = rows
            .iter()
            .filter_map(|r| {
                r.ratio.filter(|x| *x > 0.0).map(|ratio| Bar {
                    label: format!("{} (vs {})", r.experiment, r.peer_name),
                    ratio,
                })
            })
            .collect();
        if !bars.is_empty() {
            let file = format!("{name}.svg");
            ratio_chart(&out_dir.join(&file), &format!("{name}: kuai / peer"), &bars)?;
            let _ = writeln!(md, "![{name}: kuai / peer]({file})\n");
        }
        let _ = writeln!(
            md,
            "| experiment | seed | peer | peer (measured) | kuai (measured) | unit | kuai / peer | note |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for r in rows {
            if let Some(err) = &r.error {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | – | – | {} | **failed** | {} |",
                    r.experiment,
                    num(r.seed),
                    cell(&r.peer_name),
                    r.unit,
                    cell(err)
                );
                continue;
            }
            let arrow = match r.better {
                Better::Lower => "↓",
                Better::Higher => "↑",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} {arrow} | {} | {} |",
                cell(&r.experiment),
                num(r.seed),
                cell(&r.peer_name),
                num(r.peer),
                num(r.kuai),
                r.unit,
                r.ratio.map_or("–".into(), |x| if x >= 1.0 {
                    format!("{x:.2}×")
                } else {
                    format!("{x:.2}× (behind)")
                }),
                cell(r.note.as_deref().unwrap_or(""))
            );
        }
    }
    std::fs::write(out_dir.join("REPORT.md"), md).map_err(|e| format!("writing REPORT.md: {e}"))
}

fn geometric_mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let n = f64::from(u32::try_from(xs.len()).unwrap_or(u32::MAX));
    Some((xs.iter().map(|x| x.ln()).sum::<f64>() / n).exp())
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Formats a figure with precision that suits its size.
fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 0.1 => format!("{x:.3}"),
        Some(x) => format!("{x:.4}"),
    }
}

/// `YYYY-MM-DD HH:MM` from a Unix timestamp (civil-from-days).
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_numbers() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(num(Some(1234.5)), "1234");
        assert_eq!(num(Some(12.34)), "12.3");
        assert_eq!(num(None), "–");
        assert_eq!(geometric_mean(&[2.0, 8.0]), Some(4.0));
    }
}
