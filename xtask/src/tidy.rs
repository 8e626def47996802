//! Invariants that can be checked mechanically.

use std::path::{Path, PathBuf};

use crate::run::{Result, cargo};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Runs every check and reports all problems at once.
pub(crate) fn run() -> Result {
    println!("\n==> tidy");
    let root = crate::root();
    let mut problems = Vec::new();

    // 1. Every crate starts with a `//!` doc; crates without unsafe forbid it.
    let mut crate_dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    crate_dirs.push(root.join("benches"));
    crate_dirs.push(root.join("xtask"));
    crate_dirs.sort();
    for dir in &crate_dirs {
        let entry = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file());
        let Some(entry) = entry else {
            problems.push(format!("{}: no src/lib.rs or src/main.rs", dir.display()));
            continue;
        };
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{}: must start with a `//!` crate doc",
                entry.display()
            ));
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        let uses_unsafe = files.iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines().any(|l| {
                    let code = l.split("//").next().unwrap_or("");
                    code.contains("unsafe ") || code.contains("unsafe{")
                })
            })
        });
        if !uses_unsafe && !text.contains("#![forbid(unsafe_code)]") {
            problems.push(format!(
                "{}: has no unsafe code, so it must say #![forbid(unsafe_code)]",
                entry.display()
            ));
        }
    }

    // 2. File names say what is inside; unsafe blocks carry SAFETY comments;
    //    tests carry no timing thresholds.
    let mut files = Vec::new();
    for top in ["crates", "benches", "xtask"] {
        rust_files(&root.join(top), &mut files);
    }
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if matches!(
            name,
            "utils.rs" | "util.rs" | "helpers.rs" | "helper.rs" | "misc.rs"
        ) {
            problems.push(format!(
                "{}: name files by what is inside, not `{name}`",
                f.display()
            ));
        }
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mentions_in_string = code.contains("\"unsafe");
            if (code.contains("unsafe {") || code.contains("unsafe impl")) && !mentions_in_string {
                let from = i.saturating_sub(20);
                if !lines[from..=i].iter().any(|l| l.contains("SAFETY:")) {
                    problems.push(format!(
                        "{}:{}: unsafe without a `// SAFETY:` comment",
                        f.display(),
                        i + 1
                    ));
                }
            }
            let timing = ["elapsed", "as_millis", "as_micros", "as_nanos", "as_secs"];
            if code.contains("assert!(")
                && timing.iter().any(|t| code.contains(t))
                && (code.contains('<') || code.contains('>'))
            {
                problems.push(format!(
                    "{}:{}: timing threshold in an assertion (speed belongs in benchmarks)",
                    f.display(),
                    i + 1
                ));
            }
        }
    }

    // 3. kuai-core stays free of tokio.
    let tree = cargo()
        .current_dir(&root)
        .args([
            "tree",
            "-p",
            "kuai-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--quiet",
        ])
        .output();
    match tree {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| l.starts_with("tokio ")) {
                problems.push(
                    "kuai-core depends on tokio: keep the core free of any async runtime".into(),
                );
            }
        }
        Ok(out) => problems.push(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => problems.push(format!("cannot run cargo tree: {e}")),
    }

    if problems.is_empty() {
        println!(
            "<== tidy: ok ({} crates, {} files)",
            crate_dirs.len(),
            files.len()
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("    tidy: {p}");
        }
        Err(format!("tidy: {} problems", problems.len()))
    }
}
