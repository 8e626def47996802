//! FlatBuffers verification of arbitrary bytes: a verified view can be read
//! in full without panicking or reading out of bounds.
#![no_main]

use kuai_codec::schemas::{bench, log};
use kuai_codec::{CheckedTable, FlatBuffers, ViewDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = FlatBuffers::<bench::FooBarContainer<'static>>::new().with_max_input(1 << 20);
    if let Ok(c) = codec.view(data) {
        let mut sum = u64::from(c.initialized())
            .wrapping_add(c.fruit().0 as u64)
            .wrapping_add(c.location().map_or(0, |s| s.len() as u64));
        for f in c.list().iter().flatten() {
            sum = sum.wrapping_add(f.name().map_or(0, |s| s.len() as u64));
            sum = sum
                .wrapping_add(u64::from(f.postfix()))
                .wrapping_add(f.rating() as u64);
            if let Some(b) = f.sibling() {
                let p = b.parent();
                sum = sum.wrapping_add(p.id()).wrapping_add(u64::from(p.length()));
                sum = sum
                    .wrapping_add(b.time() as u64)
                    .wrapping_add(u64::from(b.size()));
            }
        }
        std::hint::black_box(sum);
    }
    // Checked reads of the same bytes: an error or a value, never a panic.
    let _ = checked(data);
    let logs = FlatBuffers::<log::Batch<'static>>::new().with_max_input(1 << 20);
    if let Ok(b) = logs.view(data) {
        let mut sum = 0u64;
        for r in b.records().iter().flatten() {
            sum = sum.wrapping_add(r.timestamp_ns());
            sum = sum.wrapping_add(r.message().map_or(0, |s| s.len() as u64));
            sum = sum.wrapping_add(r.trace_id().map_or(0, |t| t.len() as u64));
            for f in r.fields().iter().flatten() {
                sum = sum.wrapping_add(f.key().map_or(0, |s| s.len() as u64));
            }
        }
        std::hint::black_box(sum);
    }
});

fn checked(data: &[u8]) -> Result<u64, kuai_codec::Error> {
    use bench::{FooBar as T, FooBarContainer as C};
    let c = CheckedTable::root(data)?;
    let mut sum = u64::from(c.scalar::<bool>(C::VT_INITIALIZED, false)?);
    sum = sum.wrapping_add(c.str(C::VT_LOCATION)?.map_or(0, |s| s.len() as u64));
    if let Some(list) = c.tables(C::VT_LIST)? {
        for f in list.iter() {
            let f = f?;
            sum = sum.wrapping_add(f.bytes(T::VT_NAME)?.map_or(0, |s| s.len() as u64));
            sum = sum.wrapping_add(f.scalar::<f64>(T::VT_RATING, 0.0)? as u64);
            if let Some(b) = f.struct_bytes::<32>(T::VT_SIBLING)? {
                sum = sum.wrapping_add(bench::Bar(b).parent().id());
            }
            if let Some(t) = f.table(T::VT_NAME)? {
                sum = sum.wrapping_add(t.scalar::<u64>(4, 0)?);
            }
        }
    }
    Ok(sum)
}
