//! `FrameCodec` and `MessageCodec` as `tokio_util::codec` codecs.
#![cfg(feature = "tokio")]

use bytes::{Bytes, BytesMut};
use kuai_codec::{FrameCodec, MessageCodec, MsgPack};
use kuai_core::ErrorKind;
use tokio_util::codec::{Decoder, Encoder};

#[test]
fn frame_codec_streams_byte_by_byte() {
    let mut codec = FrameCodec::varint();
    let mut wire = BytesMut::new();
    for msg in [&b"one"[..], b"", &[7u8; 300]] {
        codec.encode(Bytes::copy_from_slice(msg), &mut wire).ok();
    }
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in wire.iter() {
        buf.extend_from_slice(&[*b]);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            got.push(frame.to_vec());
        }
    }
    assert_eq!(got, vec![b"one".to_vec(), Vec::new(), vec![7u8; 300]]);
    // A clean end of stream.
    assert!(matches!(codec.decode_eof(&mut buf), Ok(None)));
}

#[test]
fn eof_inside_a_frame_is_an_error() {
    let mut codec = FrameCodec::u32_be();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 5, b'a'][..]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert!(codec.decode_eof(&mut buf).is_err());
}

#[test]
fn message_codec_round_trips_and_rejects_oversize() {
    let mut codec = MessageCodec::<_, Vec<String>>::new(
        FrameCodec::varint().with_max_frame(64),
        MsgPack::compact(),
    );
    let mut wire = BytesMut::new();
    let msg = vec!["a".to_string(), "bc".to_string()];
    assert!(Encoder::encode(&mut codec, msg.clone(), &mut wire).is_ok());
    assert_eq!(
        Decoder::decode(&mut codec, &mut wire).ok().flatten(),
        Some(msg)
    );
    let big = vec!["x".repeat(100)];
    let err = Encoder::encode(&mut codec, big, &mut wire).map_err(|e| e.kind());
    assert_eq!(err, Err(ErrorKind::InvalidInput));
    assert!(wire.is_empty());
}
