//! Trace text (ARC `.lis` or one key per line) must parse or fail with an
//! error — never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let arc = data.first().is_some_and(|b| b & 1 == 1);
    let body = data.get(1..).unwrap_or_default();
    if let Ok(keys) = kuai_cache::trace::parse(body, arc, Some(1 << 16)) {
        assert!(keys.len() <= 1 << 16);
    }
});
