//! Feeds arbitrary bytes, in arbitrary chunks, to the reactor's frame
//! decoder: it must never panic, never consume a partial frame, never yield
//! a payload above the maximum, and decode the same frames however the
//! stream is split.
#![no_main]

use kuai_reactor::bytes::BytesMut;
use kuai_reactor::frame::{Frame, FrameCodec};
use libfuzzer_sys::fuzz_target;

fn decode_all(codec: &FrameCodec, chunks: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Frame::Data(b) = &frame {
                        assert!(b.len() <= codec.max_frame());
                    }
                    assert!(buf.len() < before, "a decoded frame consumes input");
                    out.push(frame);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "a partial frame is not consumed");
                    break;
                }
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let codec = FrameCodec::new(usize::from(max) * 4);
    let whole = decode_all(&codec, &[rest]);
    let split_at = usize::from(max) % (rest.len() + 1);
    let (a, b) = rest.split_at(split_at);
    let split = decode_all(&codec, &[a, b]);
    assert_eq!(whole, split, "decoding must not depend on how bytes arrive");
    // Requests: an error frame from a client is an error, never a value.
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(payload)) = codec.decode_request(&mut buf) {
        assert!(payload.len() <= codec.max_frame());
    }
});
