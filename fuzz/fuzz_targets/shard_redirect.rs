//! Redirect lines (`MOVED 3999 host:port` / `ASK …`) and keys from a
//! cluster are untrusted: parsing and slot hashing never panic, and a parsed
//! redirect always names a slot in range.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let slot = kuai_shard::key_slot(data);
    assert!(slot < kuai_shard::SLOT_COUNT);
    let tag = kuai_shard::hash_tag(data);
    assert!(tag.len() <= data.len());
    let line = String::from_utf8_lossy(data);
    match kuai_shard::Redirect::parse_redis(&line) {
        Some(kuai_shard::Redirect::Moved { partition, .. })
        | Some(kuai_shard::Redirect::Ask { partition, .. }) => {
            assert!(partition < u32::from(kuai_shard::SLOT_COUNT));
        }
        None => {}
    }
});
