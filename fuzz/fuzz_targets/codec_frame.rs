//! Length-delimited framing of arbitrary bytes, fed in arbitrary chunks:
//! frames come out or an error does; never a panic, a hang, or a buffer
//! beyond the maximum frame size. The blocking reader agrees.
#![no_main]

use bytes::BytesMut;
use kuai_codec::{Bincode, FrameCodec, MessageCodec};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let frames = if mode & 1 == 0 {
        FrameCodec::varint()
    } else {
        FrameCodec::u32_be()
    }
    .with_max_frame(MAX);
    let chunk = usize::from(mode >> 1).max(1);

    // Incremental decoding, chunk by chunk.
    let mut buf = BytesMut::new();
    let mut streamed = Vec::new();
    let mut failed = false;
    'feed: for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match frames.decode_frame(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX);
                    streamed.push(frame.to_vec());
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }

    // The blocking reader sees the same frames.
    let mut reader = rest;
    let mut scratch = Vec::new();
    let mut blocking = Vec::new();
    while let Ok(true) = frames.read_frame(&mut reader, &mut scratch) {
        blocking.push(scratch.clone());
    }
    if !failed {
        assert_eq!(&blocking[..streamed.len()], &streamed[..]);
    }

    // Typed frames never panic either.
    let msgs = MessageCodec::<_, Vec<String>>::new(frames, Bincode::new());
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_)) = msgs.decode(&mut buf) {}
});
