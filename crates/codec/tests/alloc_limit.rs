//! Hostile lengths never make a decoder allocate beyond its configured limit.
//!
//! A counting global allocator records the largest single allocation while
//! each decode runs. One test function only, so nothing else in this binary
//! allocates concurrently in a way that matters (the harness's own
//! allocations are small).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use kuai_codec::{Bincode, FrameCodec, Json, MsgPack};
use kuai_core::Decoder;

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the only addition is an atomic counter update.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded verbatim; `layout` satisfies `alloc`'s contract
        // because our caller guaranteed it.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded verbatim from a caller upholding `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

fn largest_during<R>(f: impl FnOnce() -> R) -> (usize, R) {
    LARGEST.store(0, Ordering::Relaxed);
    let r = f();
    (LARGEST.load(Ordering::Relaxed), r)
}

/// serde pre-allocates sequences from a length hint, capped at 1 MiB.
const SERDE_PREALLOC_CAP: usize = 1 << 20;

#[test]
fn hostile_lengths_stay_within_limits() {
    // bincode: a 1 TiB string and a 1 TiB Vec<u64>, limit 64 KiB.
    let codec = Bincode::new().with_limit::<{ 64 << 10 }>();
    let mut huge = vec![0xFDu8];
    huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let (peak, res) = largest_during(|| Decoder::<String>::decode(&codec, &huge));
    assert!(res.is_err());
    assert!(peak <= 64 << 10, "bincode string allocated {peak} bytes");
    // Sequences go through serde, whose length hint is capped at 1 MiB.
    let (peak, res) = largest_during(|| Decoder::<Vec<u64>>::decode(&codec, &huge));
    assert!(res.is_err());
    assert!(
        peak <= SERDE_PREALLOC_CAP,
        "bincode vec allocated {peak} bytes"
    );

    // msgpack: str32 / array32 / map32 claiming 4 billion entries.
    for input in [
        &[0xdbu8, 0xff, 0xff, 0xff, 0xff, b'a'][..],
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 1],
        &[0xdf, 0xff, 0xff, 0xff, 0xff, 1, 1],
    ] {
        let (peak, res) =
            largest_during(|| Decoder::<serde_json::Value>::decode(&MsgPack::compact(), input));
        assert!(res.is_err());
        assert!(
            peak <= SERDE_PREALLOC_CAP,
            "msgpack {input:?} allocated {peak} bytes"
        );
        let (peak, res) =
            largest_during(|| Decoder::<Vec<u64>>::decode(&MsgPack::compact(), input));
        assert!(res.is_err());
        assert!(
            peak <= SERDE_PREALLOC_CAP,
            "msgpack {input:?} allocated {peak} bytes"
        );
    }

    // json: nothing in the input can claim a size; the limit bounds the input.
    let (peak, res) = largest_during(|| {
        Decoder::<Vec<String>>::decode(
            &Json::new().with_max_input(16),
            b"[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]",
        )
    });
    assert!(res.is_err());
    assert!(peak <= 1024, "json allocated {peak} bytes");

    // frames: a 4 GiB length prefix against a 1 MiB maximum.
    let frames = FrameCodec::u32_be().with_max_frame(1 << 20);
    let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
    let (peak, res) = largest_during(|| frames.decode_frame(&mut buf));
    assert!(res.is_err());
    assert!(peak <= 1 << 20, "frame allocated {peak} bytes");
    let mut scratch = Vec::new();
    let (peak, res) =
        largest_during(|| frames.read_frame(&mut &[0u8, 0x0f, 0xff, 0xff, 1, 2][..], &mut scratch));
    assert!(res.is_err());
    assert!(
        peak <= 4096,
        "blocking frame read allocated {peak} bytes for a 6-byte input"
    );

    // lz4: a 2 GiB decompressed-size header against a 1 MiB limit.
    #[cfg(feature = "lz4")]
    {
        let codec = kuai_codec::Lz4::new(Bincode::new()).with_max_decompressed(1 << 20);
        let (peak, res) =
            largest_during(|| Decoder::<Vec<u8>>::decode(&codec, &[0, 0, 0, 0x80, 1]));
        assert!(res.is_err());
        assert!(peak <= 1 << 20, "lz4 allocated {peak} bytes");
    }
}
