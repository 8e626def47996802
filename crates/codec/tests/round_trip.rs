//! Property tests: every codec round-trips arbitrary values, alone and inside
//! frames split at arbitrary points.

use std::collections::BTreeMap;

use bytes::BytesMut;
use kuai_codec::{Bincode, FrameCodec, Json, MessageCodec, MsgPack};
use kuai_core::{Decoder, Encoder};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Empty,
    Code(u16),
    Pair { a: i64, b: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Message {
    id: u64,
    delta: i32,
    score: f64,
    name: String,
    tags: Vec<String>,
    blob: Vec<u8>,
    parent: Option<u64>,
    kind: Kind,
    attrs: BTreeMap<String, i32>,
    flag: bool,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Empty),
        any::<u16>().prop_map(Kind::Code),
        (any::<i64>(), ".{0,8}").prop_map(|(a, b)| Kind::Pair { a, b }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        (any::<u64>(), any::<i32>(), -1e12f64..1e12, ".{0,24}"),
        (
            proptest::collection::vec(".{0,6}", 0..5),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<Option<u64>>(),
            kind(),
            proptest::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..4),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((id, delta, score, name), (tags, blob, parent, kind, attrs, flag))| Message {
                id,
                delta,
                score,
                name,
                tags,
                blob,
                parent,
                kind,
                attrs,
                flag,
            },
        )
}

fn round_trip<C: Encoder<Message> + Decoder<Message>>(
    codec: &C,
    m: &Message,
) -> Result<(), TestCaseError> {
    let bytes = codec
        .encode_to_vec(m)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = codec
        .decode(&bytes)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, m);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bincode_round_trips(m in message()) {
        round_trip(&Bincode::new(), &m)?;
    }

    #[test]
    fn msgpack_compact_round_trips(m in message()) {
        round_trip(&MsgPack::compact(), &m)?;
    }

    #[test]
    fn msgpack_named_round_trips(m in message()) {
        round_trip(&MsgPack::named(), &m)?;
    }

    #[test]
    fn json_round_trips(m in message()) {
        round_trip(&Json::new(), &m)?;
    }

    #[test]
    fn frames_survive_any_split(
        msgs in proptest::collection::vec(message(), 1..6),
        split in any::<prop::sample::Index>(),
        u32_prefix in any::<bool>(),
    ) {
        let frames = if u32_prefix { FrameCodec::u32_be() } else { FrameCodec::varint() };
        let codec = MessageCodec::<_, Message>::new(frames, Bincode::new());
        let mut wire = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        // Feed the bytes in two pieces, split anywhere.
        let cut = split.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(m) = codec.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
            got.push(m);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(m) = codec.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
            got.push(m);
        }
        prop_assert_eq!(got, msgs.clone());
        prop_assert!(buf.is_empty());

        // And the blocking reader sees the same stream.
        let mut reader = &wire[..];
        let mut scratch = Vec::new();
        let mut blocking = Vec::new();
        while let Some(m) = codec.read(&mut reader, &mut scratch).map_err(|e| TestCaseError::fail(e.to_string()))? {
            blocking.push(m);
        }
        prop_assert_eq!(blocking, msgs);
    }

    #[test]
    fn raw_frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
        for frames in [FrameCodec::varint(), FrameCodec::u32_be()] {
            let mut wire = BytesMut::new();
            let mut blocking = Vec::new();
            for p in &payloads {
                frames.encode_frame(p, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
                frames.write_frame(&mut blocking, p).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            prop_assert_eq!(&wire[..], &blocking[..]);
            for p in &payloads {
                let got = frames.decode_frame(&mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got.as_deref(), Some(&p[..]));
            }
            prop_assert!(wire.is_empty());
        }
    }
}

#[cfg(feature = "lz4")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lz4_round_trips(m in message()) {
        round_trip(&kuai_codec::Lz4::new(Bincode::new()), &m)?;
        round_trip(&kuai_codec::Lz4::new(Json::new()), &m)?;
    }
}
