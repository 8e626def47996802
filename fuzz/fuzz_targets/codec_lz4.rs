//! LZ4 decompression of arbitrary bytes never panics nor allocates beyond the
//! configured limit; a decoded value round-trips.
#![no_main]

use kuai_codec::{Bincode, Decoder, Encoder, Lz4};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Lz4::new(Bincode::new()).with_max_decompressed(1 << 20);
    if let Ok(v) = Decoder::<Vec<String>>::decode(&codec, data) {
        let bytes = codec.encode_to_vec(&v).expect("a decoded value re-encodes");
        let again: Vec<String> = codec.decode(&bytes).expect("re-encoded bytes decode");
        assert_eq!(again, v);
    }
});
