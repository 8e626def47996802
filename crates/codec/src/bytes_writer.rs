//! Appending encoder output straight into a `BytesMut`.

use bytes::BytesMut;

/// An [`std::io::Write`] (and bincode `Writer`) that appends to a
/// `BytesMut`. Serializers issue many tiny writes (one-byte markers), so every
/// method is a single inlined `extend_from_slice`; `bytes`' own
/// `Writer<BufMut>` goes through `remaining_mut` and `put` on each call.
pub(crate) struct BytesWriter<'a>(pub(crate) &'a mut BytesMut);

impl std::io::Write for BytesWriter<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(buf);
        Ok(())
    }

    #[inline]
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl bincode::enc::write::Writer for BytesWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}
