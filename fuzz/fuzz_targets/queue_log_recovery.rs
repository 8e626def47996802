//! Opens a durable log whose segments hold arbitrary bytes (a sealed segment
//! without an index, and an active one) and reads it end to end: recovery
//! and reads must return errors for damage, never panic, hang or allocate
//! without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let (sealed, active) = data.split_at(split);
    if !sealed.is_empty() {
        let _ = std::fs::write(dir.path().join("00000000000000000000.log"), sealed);
    }
    let _ = std::fs::write(dir.path().join("00000000000000000010.log"), active);
    let Ok(log) = kuai_queue::log::Log::builder(dir.path())
        .max_record_bytes(4096)
        .open()
    else {
        return;
    };
    let mut next = log.start_offset();
    let mut steps = 0;
    while next < log.end_offset() && steps < 10_000 {
        steps += 1;
        match log.read_from(next, 1 << 16) {
            Ok(batch) if !batch.is_empty() => next += batch.len() as u64,
            _ => next += 1,
        }
    }
    let _ = log.append_sync(b"after recovery");
});
