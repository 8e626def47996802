//! Length-delimited framing: a length prefix (varint or big-endian `u32`)
//! followed by the payload, with a maximum frame size.
//!
//! [`FrameCodec`] moves raw payloads; [`MessageCodec`] puts a kuai codec
//! inside each frame. Both work on `BytesMut` buffers (what
//! `tokio_util::codec` uses, with the `tokio` feature) and on blocking
//! [`Read`]/[`Write`] streams.

use std::io::{Read, Write};
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use kuai_core::{Decoder, Encoder, Result};

use crate::error::CodecError;

/// The default maximum frame payload: 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 << 20;

/// The longest varint prefix: a `u32` needs at most five 7-bit groups.
const MAX_VARINT: usize = 5;

/// The varint width [`FrameCodec::encode_with`] reserves before it knows the
/// payload length.
const VARINT_GUESS: usize = 2;

/// How a frame's length is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LengthPrefix {
    /// Unsigned LEB128 (protobuf's varint): one byte for payloads under 128
    /// bytes, at most five.
    #[default]
    Varint,
    /// Four bytes, big-endian (network order).
    U32Be,
}

/// Splits a byte stream into length-prefixed frames and back.
///
/// ```
/// use bytes::BytesMut;
/// use kuai_codec::FrameCodec;
///
/// let frames = FrameCodec::varint().with_max_frame(1024);
/// let mut buf = BytesMut::new();
/// frames.encode_frame(b"hello", &mut buf)?;
/// frames.encode_frame(b"world", &mut buf)?;
/// assert_eq!(frames.decode_frame(&mut buf)?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(frames.decode_frame(&mut buf)?.as_deref(), Some(&b"world"[..]));
/// assert_eq!(frames.decode_frame(&mut buf)?, None); // needs more bytes
/// # Ok::<(), kuai_core::Error>(())
/// ```
///
/// A length above the maximum is [`Corrupt`](kuai_core::ErrorKind::Corrupt)
/// as soon as the prefix is read, before any payload is buffered, so a peer
/// cannot make the decoder hold more than `max_frame` bytes of payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    prefix: LengthPrefix,
    max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::varint()
    }
}

impl FrameCodec {
    /// Varint-prefixed frames of at most [`DEFAULT_MAX_FRAME`] bytes.
    pub const fn varint() -> Self {
        FrameCodec {
            prefix: LengthPrefix::Varint,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// Big-endian `u32`-prefixed frames of at most [`DEFAULT_MAX_FRAME`] bytes.
    pub const fn u32_be() -> Self {
        FrameCodec {
            prefix: LengthPrefix::U32Be,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// The largest payload allowed, in bytes (capped at `u32::MAX`).
    pub const fn with_max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = if bytes > u32::MAX as usize {
            u32::MAX as usize
        } else {
            bytes
        };
        self
    }

    /// The largest payload allowed, in bytes.
    pub const fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The prefix format.
    pub const fn prefix(&self) -> LengthPrefix {
        self.prefix
    }

    /// Appends one frame holding `payload` to `dst`.
    ///
    /// A payload above the maximum is refused
    /// ([`InvalidInput`](kuai_core::ErrorKind::InvalidInput)).
    pub fn encode_frame(&self, payload: &[u8], dst: &mut BytesMut) -> Result<()> {
        self.check_outgoing(payload.len())?;
        dst.reserve(MAX_VARINT + payload.len());
        match self.prefix {
            LengthPrefix::Varint => put_varint(dst, payload.len() as u32),
            LengthPrefix::U32Be => dst.put_u32(payload.len() as u32),
        }
        dst.extend_from_slice(payload);
        Ok(())
    }

    /// Appends one frame whose payload `write` appends to the buffer it is
    /// given, without an intermediate copy for `u32` prefixes; varint
    /// prefixes move the payload once in place when it is under 128 bytes or
    /// over 16 KiB.
    ///
    /// On error, `dst` is left as it was.
    pub fn encode_with(
        &self,
        dst: &mut BytesMut,
        write: impl FnOnce(&mut BytesMut) -> Result<()>,
    ) -> Result<()> {
        let start = dst.len();
        // Varints are guessed at two bytes (payloads of 128 B to 16 KiB), so
        // the common case needs no move; otherwise the payload shifts once.
        let reserved = match self.prefix {
            LengthPrefix::Varint => VARINT_GUESS,
            LengthPrefix::U32Be => 4,
        };
        dst.put_bytes(0, reserved);
        if let Err(e) = write(dst) {
            dst.truncate(start);
            return Err(e);
        }
        let len = dst.len() - start - reserved;
        if let Err(e) = self.check_outgoing(len) {
            dst.truncate(start);
            return Err(e);
        }
        match self.prefix {
            LengthPrefix::U32Be => {
                dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
            }
            LengthPrefix::Varint => {
                let (bytes, n) = varint_bytes(len as u32);
                let body = start + reserved;
                if n < reserved {
                    dst.copy_within(body.., start + n);
                    dst.truncate(dst.len() - (reserved - n));
                } else if n > reserved {
                    let end = dst.len();
                    dst.put_bytes(0, n - reserved);
                    dst.copy_within(body..end, start + n);
                }
                dst[start..start + n].copy_from_slice(&bytes[..n]);
            }
        }
        Ok(())
    }

    /// Finds the first complete frame in `src` without copying.
    ///
    /// Returns the payload and how many bytes of `src` the frame occupies, or
    /// `None` if `src` does not yet hold a whole frame.
    pub fn parse<'a>(&self, src: &'a [u8]) -> Result<Option<(&'a [u8], usize)>> {
        let Some((len, header)) = self.read_prefix(src)? else {
            return Ok(None);
        };
        let end = header + len;
        Ok(src.get(header..end).map(|payload| (payload, end)))
    }

    /// Removes the first complete frame from `src` and returns its payload,
    /// or `None` (reserving room for the rest of the frame) if it is not all
    /// there yet.
    pub fn decode_frame(&self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
        let Some((len, header)) = self.read_prefix(src)? else {
            return Ok(None);
        };
        if src.len() < header + len {
            src.reserve(header + len - src.len());
            return Ok(None);
        }
        src.advance(header);
        Ok(Some(src.split_to(len)))
    }

    /// Writes one frame to a blocking writer.
    pub fn write_frame<W: Write + ?Sized>(&self, w: &mut W, payload: &[u8]) -> Result<()> {
        self.check_outgoing(payload.len())?;
        let mut header = [0u8; MAX_VARINT];
        let n = match self.prefix {
            LengthPrefix::Varint => {
                let (bytes, n) = varint_bytes(payload.len() as u32);
                header = bytes;
                n
            }
            LengthPrefix::U32Be => {
                header[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
                4
            }
        };
        w.write_all(&header[..n]).map_err(CodecError::Io)?;
        w.write_all(payload).map_err(CodecError::Io)?;
        Ok(())
    }

    /// Reads one frame from a blocking reader into `buf` (replacing its
    /// contents). Returns `false` at a clean end of stream (no byte of a new
    /// frame read); a stream that ends inside a frame is
    /// [`Corrupt`](kuai_core::ErrorKind::Corrupt).
    ///
    /// `buf` grows only as payload bytes actually arrive, up to the maximum
    /// frame size. Wrap unbuffered readers in a `BufReader`: the varint
    /// prefix is read a byte at a time.
    pub fn read_frame<R: Read + ?Sized>(&self, r: &mut R, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        let mut header = [0u8; MAX_VARINT];
        let width = match self.prefix {
            LengthPrefix::U32Be => 4,
            LengthPrefix::Varint => 0,
        };
        let mut have = 0;
        let len = loop {
            let want = if width == 0 { have + 1 } else { width };
            let n = r.read(&mut header[have..want]).map_err(CodecError::Io)?;
            if n == 0 {
                if have == 0 {
                    return Ok(false);
                }
                return Err(
                    CodecError::malformed("frame", "stream ended inside a length prefix").into(),
                );
            }
            have += n;
            if let Some((len, _)) = self.read_prefix(&header[..have])? {
                break len;
            }
        };
        let got = r
            .take(len as u64)
            .read_to_end(buf)
            .map_err(CodecError::Io)?;
        if got != len {
            return Err(CodecError::malformed(
                "frame",
                format_args!("stream ended after {got} of {len} payload bytes"),
            )
            .into());
        }
        Ok(true)
    }

    /// Parses the length prefix: `(payload length, prefix length)`, `None` if
    /// incomplete, an error if malformed or above the maximum.
    #[inline]
    fn read_prefix(&self, src: &[u8]) -> Result<Option<(usize, usize)>> {
        let (len, header) = match self.prefix {
            LengthPrefix::U32Be => match src.first_chunk::<4>() {
                Some(b) => (u32::from_be_bytes(*b) as u64, 4),
                None => return Ok(None),
            },
            LengthPrefix::Varint => match get_varint(src)? {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        if len > self.max_frame as u64 {
            return Err(CodecError::TooLarge {
                what: "frame",
                len,
                limit: self.max_frame as u64,
            }
            .into());
        }
        Ok(Some((len as usize, header)))
    }

    #[inline]
    fn check_outgoing(&self, len: usize) -> Result<()> {
        if len > self.max_frame {
            return Err(CodecError::encode(
                "frame",
                format_args!(
                    "payload of {len} bytes exceeds the maximum frame of {} bytes",
                    self.max_frame
                ),
            )
            .into());
        }
        Ok(())
    }
}

#[inline]
fn varint_bytes(mut v: u32) -> ([u8; MAX_VARINT], usize) {
    let mut out = [0u8; MAX_VARINT];
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    (out, i + 1)
}

#[inline]
fn put_varint(dst: &mut BytesMut, v: u32) {
    let (bytes, n) = varint_bytes(v);
    dst.extend_from_slice(&bytes[..n]);
}

/// Reads a LEB128 `u32`: `(value, bytes used)`, `None` if incomplete.
#[inline]
fn get_varint(src: &[u8]) -> Result<Option<(u64, usize)>> {
    let mut value: u64 = 0;
    for (i, &b) in src.iter().take(MAX_VARINT).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if value > u64::from(u32::MAX) {
                break;
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if src.len() < MAX_VARINT && value <= u64::from(u32::MAX) {
        return Ok(None);
    }
    Err(CodecError::malformed("frame", "varint length prefix longer than a u32").into())
}

/// Frames that each carry one value encoded by the codec `C`.
///
/// ```
/// use bytes::BytesMut;
/// use kuai_codec::{Bincode, FrameCodec, MessageCodec};
///
/// let msgs = MessageCodec::<_, (u32, String)>::new(FrameCodec::u32_be(), Bincode::new());
/// let mut wire = Vec::new();
/// msgs.write(&mut wire, &(1, "one".to_string()))?;
/// msgs.write(&mut wire, &(2, "two".to_string()))?;
///
/// let mut reader = &wire[..];
/// let mut buf = Vec::new();
/// assert_eq!(msgs.read(&mut reader, &mut buf)?, Some((1, "one".to_string())));
/// assert_eq!(msgs.read(&mut reader, &mut buf)?, Some((2, "two".to_string())));
/// assert_eq!(msgs.read(&mut reader, &mut buf)?, None);
/// # Ok::<(), kuai_core::Error>(())
/// ```
///
/// With the `tokio` feature it is a `tokio_util::codec` `Encoder<T>` and
/// `Decoder<Item = T>`, ready for `FramedRead`/`FramedWrite`.
pub struct MessageCodec<C, T> {
    frames: FrameCodec,
    codec: C,
    item: PhantomData<fn(T) -> T>,
}

impl<C: std::fmt::Debug, T> std::fmt::Debug for MessageCodec<C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCodec")
            .field("frames", &self.frames)
            .field("codec", &self.codec)
            .field("item", &std::any::type_name::<T>())
            .finish()
    }
}

impl<C: Clone, T> Clone for MessageCodec<C, T> {
    fn clone(&self) -> Self {
        MessageCodec {
            frames: self.frames,
            codec: self.codec.clone(),
            item: PhantomData,
        }
    }
}

impl<C, T> MessageCodec<C, T> {
    /// Values of type `T` encoded by `codec`, one per frame of `frames`.
    pub const fn new(frames: FrameCodec, codec: C) -> Self {
        MessageCodec {
            frames,
            codec,
            item: PhantomData,
        }
    }

    /// The framing.
    pub const fn frames(&self) -> &FrameCodec {
        &self.frames
    }

    /// The value codec.
    pub const fn codec(&self) -> &C {
        &self.codec
    }
}

impl<C: Encoder<T>, T> MessageCodec<C, T> {
    /// Appends one frame holding `item` to `dst`.
    #[inline]
    pub fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()> {
        self.frames
            .encode_with(dst, |buf| self.codec.encode(item, buf))
    }

    /// Writes one frame holding `item` to a blocking writer.
    pub fn write<W: Write + ?Sized>(&self, w: &mut W, item: &T) -> Result<()> {
        let mut buf = BytesMut::new();
        self.encode(item, &mut buf)?;
        w.write_all(&buf).map_err(CodecError::Io)?;
        Ok(())
    }
}

impl<C: Decoder<T>, T> MessageCodec<C, T> {
    /// Removes and decodes the first complete frame of `src`, or returns
    /// `None` if it is not all there yet.
    #[inline]
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<T>> {
        match self.frames.parse(src)? {
            None => {
                self.frames.decode_frame(src)?;
                Ok(None)
            }
            Some((payload, used)) => {
                // Skip the frame even if its payload is bad, so the stream
                // stays in sync for a caller that chooses to carry on.
                let item = self.codec.decode(payload);
                src.advance(used);
                item.map(Some)
            }
        }
    }

    /// Reads and decodes one frame from a blocking reader, using `buf` as
    /// scratch space. `None` at a clean end of stream.
    pub fn read<R: Read + ?Sized>(&self, r: &mut R, buf: &mut Vec<u8>) -> Result<Option<T>> {
        if !self.frames.read_frame(r, buf)? {
            return Ok(None);
        }
        self.codec.decode(buf).map(Some)
    }
}

#[cfg(feature = "tokio")]
mod tokio_codec {
    use super::*;

    impl tokio_util::codec::Decoder for FrameCodec {
        type Item = BytesMut;
        type Error = kuai_core::Error;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
            self.decode_frame(src)
        }
    }

    impl tokio_util::codec::Encoder<bytes::Bytes> for FrameCodec {
        type Error = kuai_core::Error;

        fn encode(&mut self, item: bytes::Bytes, dst: &mut BytesMut) -> Result<()> {
            self.encode_frame(&item, dst)
        }
    }

    impl tokio_util::codec::Encoder<&[u8]> for FrameCodec {
        type Error = kuai_core::Error;

        fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<()> {
            self.encode_frame(item, dst)
        }
    }

    impl<C: Decoder<T>, T> tokio_util::codec::Decoder for MessageCodec<C, T> {
        type Item = T;
        type Error = kuai_core::Error;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>> {
            MessageCodec::decode(self, src)
        }
    }

    impl<C: Encoder<T>, T> tokio_util::codec::Encoder<T> for MessageCodec<C, T> {
        type Error = kuai_core::Error;

        fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<()> {
            MessageCodec::encode(self, &item, dst)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;

    #[test]
    fn varint_boundaries_round_trip() {
        for v in [0u32, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let (b, n) = varint_bytes(v);
            assert_eq!(get_varint(&b[..n]).ok().flatten(), Some((u64::from(v), n)));
            assert_eq!(get_varint(&b[..n - 1]).ok().flatten(), None);
        }
    }

    #[test]
    fn overlong_varint_is_corrupt() {
        let err = get_varint(&[0xff; 6]).map_err(|e| e.kind());
        assert_eq!(err, Err(ErrorKind::Corrupt));
        // Five bytes encoding more than u32::MAX.
        let err = get_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]).map_err(|e| e.kind());
        assert_eq!(err, Err(ErrorKind::Corrupt));
    }

    #[test]
    fn oversized_length_fails_before_payload_arrives() {
        let frames = FrameCodec::u32_be().with_max_frame(16);
        let mut src = BytesMut::from(&[0u8, 0, 0, 17][..]);
        let err = frames.decode_frame(&mut src).map_err(|e| e.kind());
        assert_eq!(err, Err(ErrorKind::Corrupt));
        assert!(src.capacity() < 1024);
    }

    #[test]
    fn encode_refuses_oversized_payload_and_leaves_dst_alone() {
        let frames = FrameCodec::varint().with_max_frame(4);
        let mut dst = BytesMut::from(&b"keep"[..]);
        let err = frames
            .encode_frame(b"12345", &mut dst)
            .map_err(|e| e.kind());
        assert_eq!(err, Err(ErrorKind::InvalidInput));
        let err = frames
            .encode_with(&mut dst, |b| {
                b.extend_from_slice(b"12345");
                Ok(())
            })
            .map_err(|e| e.kind());
        assert_eq!(err, Err(ErrorKind::InvalidInput));
        assert_eq!(&dst[..], b"keep");
    }

    #[test]
    fn encode_with_matches_encode_frame() {
        for prefix in [FrameCodec::varint(), FrameCodec::u32_be()] {
            for len in [0usize, 1, 127, 128, 300, 20_000] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                prefix.encode_frame(&payload, &mut a).ok();
                prefix
                    .encode_with(&mut b, |d| {
                        d.extend_from_slice(&payload);
                        Ok(())
                    })
                    .ok();
                assert_eq!(a, b, "{prefix:?} len {len}");
            }
        }
    }

    #[test]
    fn blocking_read_detects_truncation() {
        let frames = FrameCodec::u32_be();
        let mut wire = Vec::new();
        frames.write_frame(&mut wire, b"abcdef").ok();
        let mut buf = Vec::new();
        for cut in 1..wire.len() {
            let res = frames.read_frame(&mut &wire[..cut], &mut buf);
            assert_eq!(
                res.map_err(|e| e.kind()),
                Err(ErrorKind::Corrupt),
                "cut {cut}"
            );
        }
        assert_eq!(
            frames.read_frame(&mut &wire[..0], &mut buf).ok(),
            Some(false)
        );
        assert_eq!(frames.read_frame(&mut &wire[..], &mut buf).ok(), Some(true));
        assert_eq!(buf, b"abcdef");
    }
}
