//! Smoke target: arbitrary text in an error never breaks formatting.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let msg = String::from_utf8_lossy(data);
    let err = kuai_core::Error::corrupt(msg.as_ref());
    let _ = err.to_string();
});
