//! The file cold tier's log recovery on arbitrary (damaged) files: opening
//! never panics or over-allocates, keeps a prefix of valid records, and the
//! recovered log reads back consistently.
#![no_main]

use kuai_store::{ColdTier, FileColdTier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("kuai-fuzz-cold-{}.log", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(tier) = FileColdTier::open(&path, false) {
        assert!(tier.log_len() <= data.len() as u64);
        for key in tier.keys().unwrap_or_default() {
            assert!(matches!(tier.get(&key), Ok(Some(_))));
        }
        let _ = tier.put(&7, &b"after recovery".to_vec());
        assert_eq!(tier.get(&7).ok().flatten().as_deref(), Some(&b"after recovery"[..]));
    }
    let _ = std::fs::remove_file(&path);
});
