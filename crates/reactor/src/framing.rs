//! Pluggable wire framing: how a connection's byte stream is cut into
//! request frames and how responses (and error messages) are written back.
//!
//! The server is generic over a [`Framing`] and monomorphized for it: the
//! hot path calls `decode` / `encode` directly, with no `dyn` dispatch. Each
//! connection gets its own clone of the framing given to
//! [`ServerBuilder::framing`](crate::ServerBuilder::framing), so a framing
//! may keep per-connection parser state in plain fields.
//!
//! Provided framings:
//! - [`frame::FrameCodec`](crate::frame::FrameCodec) (the default): a 4-byte
//!   big-endian length whose top bit flags error frames.
//! - [`CodecFraming`]: `kuai-codec`'s length-delimited
//!   [`FrameCodec`](kuai_codec::FrameCodec) (varint or `u32` length, maximum
//!   frame size); error messages travel as ordinary frames behind a prefix.

use bytes::{Buf, Bytes, BytesMut};

use crate::ReactorError;
use crate::frame::{FrameCodec, HEADER_LEN};

/// Cuts a byte stream into request frames and writes response frames.
///
/// Contract (what the server relies on):
/// - [`decode`](Framing::decode) removes one complete request from the front
///   of `buf` and returns it, or returns `Ok(None)` and leaves `buf` as it
///   was while the next frame is incomplete. The server calls it in a loop
///   after every read, so every frame that arrived in one read is handled in
///   that wake-up. When waiting for the rest of a frame whose length is
///   known, it may `reserve` room for it in `buf` (bounded by its own
///   maximum). It must never buffer or allocate more than its maximum
///   frame size on behalf of a peer.
/// - `Err` means the stream is unusable (garbage, oversized frame): the
///   server sends [`encode_error`](Framing::encode_error) with the error's
///   text, counts a frame error and closes **that** connection only.
/// - [`encode`](Framing::encode) appends one response frame to `out`; on
///   `Err` it must leave `out` unchanged, and the server sends an error frame
///   instead (the connection stays open).
/// - [`encode_error`](Framing::encode_error) appends an error response (a
///   handler's `Err`, a panic, a refused connection); it cannot fail and
///   should truncate over-long messages.
///
/// A newline-delimited framing, the shape a text protocol (e.g. a RESP-like
/// server) would plug in:
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use kuai_reactor::{Framing, ReactorError};
///
/// #[derive(Debug, Clone)]
/// struct Lines { max: usize }
///
/// impl Framing for Lines {
///     type Error = ReactorError;
///     fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ReactorError> {
///         match buf.iter().position(|&b| b == b'\n') {
///             Some(i) if i <= self.max => {
///                 let line = buf.split_to(i + 1).freeze();
///                 Ok(Some(line.slice(..i)))
///             }
///             Some(i) => Err(ReactorError::FrameTooLarge { len: i, max: self.max }),
///             None if buf.len() > self.max => {
///                 Err(ReactorError::FrameTooLarge { len: buf.len(), max: self.max })
///             }
///             None => Ok(None),
///         }
///     }
///     fn encode(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), ReactorError> {
///         out.extend_from_slice(frame);
///         out.extend_from_slice(b"\n");
///         Ok(())
///     }
///     fn encode_error(&mut self, message: &str, out: &mut BytesMut) {
///         out.extend_from_slice(b"-ERR ");
///         out.extend_from_slice(message.replace('\n', " ").as_bytes());
///         out.extend_from_slice(b"\n");
///     }
/// }
///
/// let mut lines = Lines { max: 64 };
/// let mut buf = BytesMut::from(&b"PING\nECHO x\nPAR"[..]);
/// assert_eq!(lines.decode(&mut buf).unwrap().as_deref(), Some(&b"PING"[..]));
/// assert_eq!(lines.decode(&mut buf).unwrap().as_deref(), Some(&b"ECHO x"[..]));
/// assert_eq!(lines.decode(&mut buf).unwrap(), None); // "PAR" waits for more
/// ```
pub trait Framing: Clone + Send + 'static {
    /// Why a stream could not be decoded (or a response encoded); its
    /// `Display` text is what the peer's error frame carries.
    type Error: std::error::Error + 'static;

    /// Removes and returns the next complete request frame at the front of
    /// `buf`, or `Ok(None)` until one is complete.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Self::Error>;

    /// Appends one response frame carrying `frame` to `out`.
    fn encode(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), Self::Error>;

    /// Appends an error response carrying `message` to `out`.
    fn encode_error(&mut self, message: &str, out: &mut BytesMut);
}

/// The default framing: the reactor's own 4-byte length prefix with an error
/// flag (see [`frame`](crate::frame)). Request frames with the error flag set
/// are refused.
impl Framing for FrameCodec {
    type Error = ReactorError;

    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ReactorError> {
        // `decode_request` with one header read, plus the reservation for a
        // partial frame.
        let Some((is_error, len)) = self.peek_header(buf)? else {
            return Ok(None);
        };
        if is_error {
            return Err(ReactorError::UnexpectedErrorFrame);
        }
        let need = HEADER_LEN + len;
        if buf.len() < need {
            // Make room for the whole declared frame (bounded by max_frame).
            if buf.capacity() < need {
                buf.reserve(need - buf.len());
            }
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }

    #[inline]
    fn encode(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), ReactorError> {
        FrameCodec::encode(self, frame, out)
    }

    #[inline]
    fn encode_error(&mut self, message: &str, out: &mut BytesMut) {
        FrameCodec::encode_error(self, message, out);
    }
}

/// The prefix [`CodecFraming`] puts before error messages by default.
pub const DEFAULT_ERROR_PREFIX: &[u8] = b"ERR ";

/// [`Framing`] over `kuai-codec`'s length-delimited
/// [`FrameCodec`](kuai_codec::FrameCodec): a varint or big-endian `u32`
/// length, then the payload, with the codec's maximum frame size.
///
/// That wire format has no error flag, so error responses are ordinary
/// frames whose payload is an *error prefix* (default
/// [`DEFAULT_ERROR_PREFIX`], `b"ERR "`) followed by the UTF-8 message; pick a
/// prefix your protocol's successful responses never start with
/// ([`error_prefix`](CodecFraming::error_prefix)).
///
/// ```
/// use kuai_reactor::{CodecFraming, Server, service_fn};
///
/// let frames = kuai_codec::FrameCodec::varint().with_max_frame(64 * 1024);
/// let server = Server::builder()
///     .threads(1)
///     .framing(CodecFraming::new(frames))
///     .serve("127.0.0.1:0", |_| service_fn(|req| async move { Ok(req) }))
///     .unwrap();
///
/// // Any kuai-codec speaker is a client.
/// let mut conn = std::net::TcpStream::connect(server.local_addr()).unwrap();
/// frames.write_frame(&mut conn, b"hello").unwrap();
/// let mut reply = Vec::new();
/// assert!(frames.read_frame(&mut conn, &mut reply).unwrap());
/// assert_eq!(reply, b"hello");
/// ```
#[derive(Debug, Clone)]
pub struct CodecFraming {
    frames: kuai_codec::FrameCodec,
    error_prefix: Bytes,
}

impl Default for CodecFraming {
    fn default() -> Self {
        CodecFraming::new(kuai_codec::FrameCodec::default())
    }
}

impl CodecFraming {
    /// Frames as `frames` does (prefix format and maximum frame size), error
    /// messages behind [`DEFAULT_ERROR_PREFIX`].
    pub fn new(frames: kuai_codec::FrameCodec) -> Self {
        CodecFraming {
            frames,
            error_prefix: Bytes::from_static(DEFAULT_ERROR_PREFIX),
        }
    }

    /// Sets the bytes that start every error response.
    pub fn error_prefix(mut self, prefix: impl Into<Bytes>) -> Self {
        self.error_prefix = prefix.into();
        self
    }

    /// The underlying `kuai-codec` framer.
    pub fn frames(&self) -> &kuai_codec::FrameCodec {
        &self.frames
    }
}

impl Framing for CodecFraming {
    type Error = kuai_core::Error;

    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, kuai_core::Error> {
        // `decode_frame` reserves room for an incomplete frame itself.
        Ok(self.frames.decode_frame(buf)?.map(BytesMut::freeze))
    }

    #[inline]
    fn encode(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), kuai_core::Error> {
        self.frames.encode_frame(frame, out)
    }

    fn encode_error(&mut self, message: &str, out: &mut BytesMut) {
        let max = self.frames.max_frame();
        let prefix = &self.error_prefix[..self.error_prefix.len().min(max)];
        let mut end = message.len().min(max - prefix.len());
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message.as_bytes()[..end];
        // Cannot fail: the payload fits the maximum by construction (and on
        // failure `encode_with` leaves `out` untouched).
        let _ = self.frames.encode_with(out, |b| {
            b.extend_from_slice(prefix);
            b.extend_from_slice(msg);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_framing_matches_the_frame_codec() {
        let mut f = FrameCodec::new(16);
        let mut wire = BytesMut::new();
        Framing::encode(&mut f, b"abc", &mut wire).unwrap_or_default();
        Framing::encode_error(&mut f, "bad", &mut wire);
        assert_eq!(&wire[..], b"\0\0\0\x03abc\x80\0\0\x03bad");
        let mut req = BytesMut::from(&wire[..7]);
        assert_eq!(
            Framing::decode(&mut f, &mut req).ok().flatten().as_deref(),
            Some(&b"abc"[..])
        );
        // An error frame is not a request.
        let mut err = BytesMut::from(&wire[7..]);
        assert!(Framing::decode(&mut f, &mut err).is_err());
    }

    #[test]
    fn default_framing_reserves_for_a_declared_frame() {
        let mut f = FrameCodec::new(1 << 16);
        let mut buf = BytesMut::from(&[0u8, 0, 0x10, 0, 1, 2][..]);
        assert_eq!(Framing::decode(&mut f, &mut buf).ok(), Some(None));
        assert_eq!(buf.len(), 6, "nothing consumed");
        assert!(buf.capacity() >= HEADER_LEN + 0x1000);
    }

    #[test]
    fn codec_framing_round_trips_and_prefixes_errors() {
        for frames in [
            kuai_codec::FrameCodec::varint(),
            kuai_codec::FrameCodec::u32_be(),
        ] {
            let mut f = CodecFraming::new(frames.with_max_frame(8));
            let mut wire = BytesMut::new();
            f.encode(b"hi", &mut wire).unwrap_or_default();
            assert!(f.encode(b"too long!", &mut wire).is_err());
            f.encode_error("héllo wörld", &mut wire);
            assert_eq!(
                f.decode(&mut wire).ok().flatten().as_deref(),
                Some(&b"hi"[..])
            );
            let err = f.decode(&mut wire).ok().flatten().unwrap_or_default();
            assert_eq!(&err[..], "ERR hél".as_bytes());
            assert!(wire.is_empty());
        }
        let mut f = CodecFraming::new(kuai_codec::FrameCodec::varint().with_max_frame(2))
            .error_prefix(&b"!!!"[..]);
        let mut wire = BytesMut::new();
        f.encode_error("x", &mut wire);
        assert_eq!(&wire[..], b"\x02!!");
        assert_eq!(f.frames().max_frame(), 2);
    }

    #[test]
    fn codec_framing_refuses_oversized_declarations_before_buffering() {
        let mut f = CodecFraming::new(kuai_codec::FrameCodec::u32_be().with_max_frame(16));
        let mut evil = BytesMut::from(&b"\x7f\xff\xff\xff"[..]);
        assert!(f.decode(&mut evil).is_err());
        assert!(evil.capacity() < 1024);
    }

    proptest! {
        #[test]
        fn codec_framing_cuts_every_split_stream(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            split in 0usize..5000,
            varint in any::<bool>(),
        ) {
            let frames = if varint { kuai_codec::FrameCodec::varint() } else { kuai_codec::FrameCodec::u32_be() };
            let mut f = CodecFraming::new(frames.with_max_frame(512));
            let mut wire = BytesMut::new();
            for p in &payloads {
                f.encode(p, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let split = split % (wire.len() + 1);
            let mut buf = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            while let Some(p) = f.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(p.to_vec());
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(p) = f.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(p.to_vec());
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, payloads);
        }
    }
}
