//! JSON decoding of arbitrary bytes: errors, never panics; a decoded value
//! round-trips.
#![no_main]

use kuai_codec::{Decoder, Encoder, Json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Json::new().with_max_input(1 << 20);
    if let Ok(value) = Decoder::<serde_json::Value>::decode(&codec, data) {
        let bytes = codec
            .encode_to_vec(&value)
            .expect("a decoded value re-encodes");
        let again: serde_json::Value = codec.decode(&bytes).expect("re-encoded bytes decode");
        assert_eq!(again, value);
    }
});
