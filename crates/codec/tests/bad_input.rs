//! Hostile input: truncated, bit-flipped, oversized lengths, deep nesting and
//! random bytes give `Corrupt` from every codec — never a panic.

use std::collections::BTreeMap;

use bytes::BytesMut;
use kuai_codec::schemas::bench::{
    Bar, Enum, Foo, FooBar, FooBarArgs, FooBarContainer, FooBarContainerArgs,
};
use kuai_codec::{Bincode, FlatBuffers, FrameCodec, Json, MessageCodec, MsgPack};
use kuai_core::{Decoder, Encoder, ErrorKind, ViewDecoder};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    values: Vec<u32>,
    attrs: BTreeMap<String, String>,
    nested: Option<Box<Record>>,
}

fn sample() -> Record {
    Record {
        id: 0xDEAD_BEEF,
        name: "a reasonably long name".into(),
        values: (0..20).collect(),
        attrs: [("k".to_string(), "v".to_string())].into(),
        nested: Some(Box::new(Record {
            id: 1,
            name: "inner".into(),
            values: vec![1, 2, 3],
            attrs: BTreeMap::new(),
            nested: None,
        })),
    }
}

/// The serde codecs under test, boxed behind one signature.
/// A decode function behind one signature.
type DecodeFn = Box<dyn Fn(&[u8]) -> kuai_core::Result<Record>>;

fn serde_codecs() -> Vec<(&'static str, DecodeFn, Vec<u8>)> {
    let r = sample();
    let enc = |c: &dyn Encoder<Record>| c.encode_to_vec(&r).unwrap_or_default();
    vec![
        (
            "bincode",
            Box::new(|b: &[u8]| Bincode::new().decode(b)),
            enc(&Bincode::new()),
        ),
        (
            "msgpack compact",
            Box::new(|b: &[u8]| MsgPack::compact().decode(b)),
            enc(&MsgPack::compact()),
        ),
        (
            "msgpack named",
            Box::new(|b: &[u8]| MsgPack::named().decode(b)),
            enc(&MsgPack::named()),
        ),
        (
            "json",
            Box::new(|b: &[u8]| Json::new().decode(b)),
            enc(&Json::new()),
        ),
    ]
}

fn assert_corrupt<T: std::fmt::Debug>(what: &str, res: kuai_core::Result<T>) {
    match res {
        Ok(v) => panic!("{what}: expected Corrupt, decoded {v:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}"),
    }
}

#[test]
fn every_truncation_is_corrupt() {
    for (name, decode, bytes) in serde_codecs() {
        assert!(!bytes.is_empty(), "{name} encoded nothing");
        assert_eq!(decode(&bytes).ok(), Some(sample()), "{name}");
        for cut in 0..bytes.len() {
            assert_corrupt(&format!("{name} cut at {cut}"), decode(&bytes[..cut]));
        }
    }
    // FlatBuffers ends with alignment padding: cutting only padding leaves a
    // valid buffer with the same content; any cut into data is Corrupt.
    let fb = foobar_buffer();
    let codec = FlatBuffers::<FooBarContainer<'static>>::new();
    let full = codec.view(&fb).map(traverse).ok();
    assert!(full.is_some());
    let mut valid_cuts = 0;
    for cut in 0..fb.len() {
        match codec.view(&fb[..cut]) {
            Ok(view) => {
                assert_eq!(Some(traverse(view)), full, "flatbuffers cut at {cut}");
                valid_cuts += 1;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "flatbuffers cut at {cut}"),
        }
    }
    assert!(
        valid_cuts < 8,
        "only trailing padding may be cut, {valid_cuts} cuts verified"
    );
}

#[test]
fn oversized_lengths_are_corrupt() {
    // bincode: a string claiming 2^40 bytes.
    let mut b = vec![0xFDu8];
    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert_corrupt("bincode", Decoder::<String>::decode(&Bincode::new(), &b));
    // msgpack: an array32 claiming 4 billion elements, and a bin32 of 4 GiB.
    assert_corrupt(
        "msgpack array",
        Decoder::<Vec<u64>>::decode(&MsgPack::compact(), &[0xdd, 0xff, 0xff, 0xff, 0xff, 1]),
    );
    assert_corrupt(
        "msgpack bin",
        Decoder::<serde_bytes_like::Bytes>::decode(
            &MsgPack::compact(),
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 1],
        ),
    );
    // json: input above the limit.
    assert_corrupt(
        "json",
        Decoder::<String>::decode(&Json::new().with_max_input(4), b"\"abcdef\""),
    );
    // flatbuffers: a root offset far past the end.
    let codec = FlatBuffers::<FooBarContainer<'static>>::new();
    assert_corrupt(
        "flatbuffers root",
        codec
            .view(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0])
            .map(|_| ()),
    );
    assert_corrupt(
        "flatbuffers size",
        codec
            .clone()
            .with_max_input(8)
            .view(&foobar_buffer())
            .map(|_| ()),
    );
    // frames: a length above the maximum.
    let mut frame = BytesMut::from(&[0xff, 0xff, 0xff, 0x0f][..]);
    assert_corrupt(
        "frame",
        FrameCodec::varint()
            .with_max_frame(1 << 20)
            .decode_frame(&mut frame),
    );
}

/// A byte buffer that deserializes from MessagePack bin (serde's `Vec<u8>`
/// would ask for a sequence).
mod serde_bytes_like {
    #[derive(Debug)]
    pub struct Bytes(#[allow(dead_code)] pub Vec<u8>);
    impl<'de> serde::Deserialize<'de> for Bytes {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

#[test]
fn deep_nesting_is_corrupt() {
    let depth = 100_000;
    let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert_corrupt(
        "json",
        Decoder::<serde_json::Value>::decode(&Json::new(), json.as_bytes()),
    );
    let mut mp = vec![0x91u8; depth];
    mp.push(0xc0);
    assert_corrupt(
        "msgpack",
        Decoder::<serde_json::Value>::decode(&MsgPack::compact(), &mp),
    );
    // A recursive Rust type through msgpack: Some(Box<Record>) 10k deep.
    let mut rec = vec![0x95u8, 0, 0xa0, 0x90, 0x80]; // [0, "", [], {}, ...
    for _ in 0..10_000 {
        rec.extend_from_slice(&[0x95, 0, 0xa0, 0x90, 0x80]);
    }
    assert_corrupt(
        "msgpack recursive",
        Decoder::<Record>::decode(&MsgPack::compact(), &rec),
    );
}

fn foobar_buffer() -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut list = Vec::new();
    for i in 0..3u8 {
        let name = fbb.create_string("Hello, World!");
        let parent = Foo::new(
            0xABAD_CAFE_ABAD_CAFE + u64::from(i),
            10_000,
            b'@' as i8,
            1_000_000,
        );
        let bar = Bar::new(&parent, 123_456, 2.5, 10_000);
        list.push(FooBar::create(
            &mut fbb,
            &FooBarArgs {
                sibling: Some(&bar),
                name: Some(name),
                rating: 1.25,
                postfix: b'!',
            },
        ));
    }
    let list = fbb.create_vector(&list);
    let location = fbb.create_string("https://www.example.com/myurl/");
    let root = FooBarContainer::create(
        &mut fbb,
        &FooBarContainerArgs {
            list: Some(list),
            initialized: true,
            fruit: Enum::Bananas,
            location: Some(location),
        },
    );
    fbb.finish(root, None);
    fbb.finished_data().to_vec()
}

/// Reads every field of a verified view; must never panic.
fn traverse(c: FooBarContainer<'_>) -> u64 {
    let mut parts = vec![u64::from(c.initialized()), c.fruit().0 as u64];
    parts.push(c.location().map_or(0, |s| s.len() as u64));
    for fb in c.list().iter().flatten() {
        parts.push(fb.name().map_or(0, |s| s.len() as u64));
        parts.extend([u64::from(fb.postfix()), fb.rating() as u64]);
        if let Some(bar) = fb.sibling() {
            parts.extend([bar.ratio() as u64, u64::from(bar.size()), bar.time() as u64]);
            let p = bar.parent();
            parts.extend([
                p.id(),
                p.count() as u64,
                p.prefix() as u64,
                u64::from(p.length()),
            ]);
        }
    }
    parts.into_iter().fold(0, u64::wrapping_add)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bit_flips_never_panic(bit in any::<prop::sample::Index>()) {
        for (name, decode, mut bytes) in serde_codecs() {
            let i = bit.index(bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            if let Err(e) = decode(&bytes) {
                prop_assert_eq!(e.kind(), ErrorKind::Corrupt, "{} {}", name, e);
            }
        }
        let mut fb = foobar_buffer();
        let i = bit.index(fb.len() * 8);
        fb[i / 8] ^= 1 << (i % 8);
        match FlatBuffers::<FooBarContainer<'static>>::new().view(&fb) {
            Ok(view) => { traverse(view); }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Corrupt),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for (name, decode, _) in serde_codecs() {
            if let Err(e) = decode(&bytes) {
                prop_assert_eq!(e.kind(), ErrorKind::Corrupt, "{} {}", name, e);
            }
        }
        if let Ok(view) = FlatBuffers::<FooBarContainer<'static>>::new().view(&bytes) {
            traverse(view);
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let msgs = MessageCodec::<_, Record>::new(FrameCodec::varint().with_max_frame(256), Bincode::new());
        // Decode until the codec needs more input or fails; must terminate.
        for _ in 0..=bytes.len() {
            match msgs.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => { prop_assert_eq!(e.kind(), ErrorKind::Corrupt); break; }
            }
        }
    }
}
