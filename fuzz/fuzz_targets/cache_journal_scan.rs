//! The write-behind journal's recovery scan on hostile bytes: never a
//! panic, and the records it keeps end where it says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = kuai_cache::JournalRecovery::scan(data);
    assert!(r.discarded_bytes <= data.len() as u64);
    let kept = data.len() - r.discarded_bytes as usize;
    let again = kuai_cache::JournalRecovery::scan(&data[..kept]);
    assert_eq!(again.records, r.records);
    assert_eq!(again.discarded_bytes, 0);
});
