//! MessagePack decoding of arbitrary bytes, as a typed struct (both struct
//! modes) and as a self-describing value: errors, never panics.
#![no_main]

use kuai_codec::{Decoder, MsgPack};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Msg {
    id: u64,
    name: String,
    tags: Vec<String>,
    nested: Option<Box<Msg>>,
    values: Vec<f64>,
}

fuzz_target!(|data: &[u8]| {
    let codec = MsgPack::compact()
        .with_max_input(1 << 20)
        .with_max_depth(64);
    let _ = Decoder::<Msg>::decode(&codec, data);
    let _ = Decoder::<serde_json::Value>::decode(&codec, data);
    let _ = Decoder::<Msg>::decode(&MsgPack::named(), data);
});
