//! bincode decoding of arbitrary bytes: an error or a value, never a panic or
//! an allocation beyond the limit; a decoded value re-encodes and decodes equal.
#![no_main]

use std::collections::BTreeMap;

use kuai_codec::{Bincode, Decoder, Encoder};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Kind {
    A,
    B(u32),
    C { s: String, v: Vec<i64> },
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Msg {
    id: u64,
    name: String,
    tags: Vec<String>,
    blob: Vec<u8>,
    kind: Option<Kind>,
    attrs: BTreeMap<String, u32>,
    score: i32,
}

fuzz_target!(|data: &[u8]| {
    let codec = Bincode::new().with_limit::<{ 1 << 20 }>();
    if let Ok(msg) = Decoder::<Msg>::decode(&codec, data) {
        let bytes = codec
            .encode_to_vec(&msg)
            .expect("a decoded value re-encodes");
        let again: Msg = codec.decode(&bytes).expect("re-encoded bytes decode");
        assert_eq!(again, msg);
    }
});
