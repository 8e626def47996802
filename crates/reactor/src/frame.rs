//! Length-prefixed framing with a maximum frame size.
//!
//! Wire format (until `kuai-codec`'s framing lands and replaces it): a 4-byte
//! big-endian header, then the payload. The header's top bit is the *error
//! flag* (only servers set it: the payload is then a UTF-8 error message);
//! the low 31 bits are the payload length. A header declaring more than the
//! configured maximum is rejected before any payload is buffered, so a hostile
//! peer cannot make the decoder allocate more than `max_frame` bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ReactorError;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// The error flag in a frame header.
const ERROR_FLAG: u32 = 1 << 31;

/// The largest payload the wire format can express (2³¹ − 1 bytes).
pub const MAX_FRAME_LIMIT: usize = (ERROR_FLAG - 1) as usize;

/// The default maximum payload size: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// What a decoded frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An ordinary payload (a request, or a successful response).
    Data(Bytes),
    /// An error response; the payload is a UTF-8 message (lossily decoded).
    Error(String),
}

/// Encodes and decodes length-prefixed frames, refusing any above `max_frame`.
///
/// ```
/// use bytes::BytesMut;
/// use kuai_reactor::frame::{Frame, FrameCodec};
///
/// let codec = FrameCodec::new(16);
/// let mut buf = BytesMut::new();
/// codec.encode(b"ping", &mut buf).unwrap();
/// assert_eq!(&buf[..], b"\0\0\0\x04ping");
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Data("ping".into())));
/// assert!(buf.is_empty());
///
/// // A header that declares more than the maximum is an error, not an allocation.
/// let mut evil = BytesMut::from(&b"\x7f\xff\xff\xff"[..]);
/// assert!(codec.decode(&mut evil).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    /// A codec accepting payloads up to `max_frame` bytes (clamped to
    /// [`MAX_FRAME_LIMIT`]).
    pub fn new(max_frame: usize) -> Self {
        FrameCodec {
            max_frame: max_frame.min(MAX_FRAME_LIMIT),
        }
    }

    /// The maximum payload size.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Reads the header at the front of `src`: `(is_error, payload_len)`, or
    /// `None` while fewer than [`HEADER_LEN`] bytes are there.
    #[inline]
    pub fn peek_header(&self, src: &[u8]) -> Result<Option<(bool, usize)>, ReactorError> {
        let Some(head) = src.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let raw = u32::from_be_bytes(*head);
        let len = (raw & !ERROR_FLAG) as usize;
        if len > self.max_frame {
            return Err(ReactorError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        Ok(Some((raw & ERROR_FLAG != 0, len)))
    }

    /// Decodes one frame (data or error) from the front of `src`, or returns
    /// `None` if it is not complete yet. The payload is split off `src`
    /// without copying.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Frame>, ReactorError> {
        let Some((is_error, len)) = self.peek_header(src)? else {
            return Ok(None);
        };
        if src.len() < HEADER_LEN + len {
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        Ok(Some(if is_error {
            Frame::Error(String::from_utf8_lossy(&payload).into_owned())
        } else {
            Frame::Data(payload)
        }))
    }

    /// Decodes one *request*: like [`decode`](Self::decode), but an error
    /// frame is itself an error ([`ReactorError::UnexpectedErrorFrame`]).
    #[inline]
    pub fn decode_request(&self, src: &mut BytesMut) -> Result<Option<Bytes>, ReactorError> {
        let Some((is_error, len)) = self.peek_header(src)? else {
            return Ok(None);
        };
        if is_error {
            return Err(ReactorError::UnexpectedErrorFrame);
        }
        if src.len() < HEADER_LEN + len {
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len).freeze()))
    }

    /// Appends a data frame carrying `payload` to `dst`.
    #[inline]
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), ReactorError> {
        if payload.len() > self.max_frame {
            return Err(ReactorError::FrameTooLarge {
                len: payload.len(),
                max: self.max_frame,
            });
        }
        dst.reserve(HEADER_LEN + payload.len());
        // Cannot truncate: `payload.len() <= max_frame <= MAX_FRAME_LIMIT < 2^31`.
        dst.put_u32(payload.len() as u32);
        dst.put_slice(payload);
        Ok(())
    }

    /// Appends an error frame carrying `message` (truncated to the maximum
    /// frame size at a character boundary) to `dst`.
    pub fn encode_error(&self, message: &str, dst: &mut BytesMut) {
        let mut end = message.len().min(self.max_frame);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message.as_bytes()[..end];
        dst.reserve(HEADER_LEN + msg.len());
        dst.put_u32(msg.len() as u32 | ERROR_FLAG);
        dst.put_slice(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn half_sent_frames_wait_for_more() {
        let codec = FrameCodec::new(64);
        let mut buf = BytesMut::new();
        codec.encode(b"hello", &mut buf).unwrap_or_default();
        let full = buf.clone();
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(codec.decode_request(&mut part).ok(), Some(None));
            assert_eq!(part.len(), cut, "nothing consumed from a partial frame");
        }
    }

    #[test]
    fn error_frames_round_trip_and_are_refused_as_requests() {
        let codec = FrameCodec::new(8);
        let mut buf = BytesMut::new();
        codec.encode_error("héllo wörld", &mut buf);
        let mut copy = buf.clone();
        assert!(matches!(
            codec.decode_request(&mut copy),
            Err(ReactorError::UnexpectedErrorFrame)
        ));
        match codec.decode(&mut buf) {
            Ok(Some(Frame::Error(msg))) => assert_eq!(msg, "héllo w"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oversized_payloads_are_refused_both_ways() {
        let codec = FrameCodec::new(3);
        let mut buf = BytesMut::new();
        assert!(matches!(
            codec.encode(b"four", &mut buf),
            Err(ReactorError::FrameTooLarge { len: 4, max: 3 })
        ));
        assert!(buf.is_empty());
        let mut evil = BytesMut::from(&[0u8, 0, 0, 4, 1, 2, 3, 4][..]);
        assert!(codec.decode(&mut evil).is_err());
        assert_eq!(FrameCodec::new(usize::MAX).max_frame(), MAX_FRAME_LIMIT);
    }

    proptest! {
        #[test]
        fn stream_of_frames_round_trips(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 0..20), split in 0usize..2000) {
            let codec = FrameCodec::new(64);
            let mut wire = BytesMut::new();
            for p in &payloads {
                codec.encode(p, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            // Feed the stream in two arbitrary pieces.
            let split = split % (wire.len() + 1);
            let mut buf = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            while let Some(f) = codec.decode_request(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(f.to_vec());
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(f) = codec.decode_request(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(f.to_vec());
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, payloads);
        }

        #[test]
        fn garbage_never_panics_nor_overreads(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let codec = FrameCodec::new(16);
            let mut buf = BytesMut::from(&bytes[..]);
            let before = buf.len();
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
            prop_assert!(buf.len() <= before);
        }
    }
}
