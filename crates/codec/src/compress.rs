//! LZ4 compression around any codec (feature `lz4`, pure-Rust `lz4_flex`).

use bytes::{BufMut, BytesMut};
use kuai_core::{Decoder, Encoder, Result};

use crate::error::CodecError;

/// The default limit on a decompressed payload: 16 MiB.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 16 << 20;

/// Wraps a codec `C`, compressing its output with LZ4 (block format,
/// prefixed by the uncompressed length as a little-endian `u32`).
///
/// ```
/// use kuai_codec::{Json, Lz4};
/// use kuai_core::{Decoder, Encoder};
///
/// let codec = Lz4::new(Json::new());
/// let text = "all work and no play ".repeat(100);
/// let bytes = codec.encode_to_vec(&text)?;
/// assert!(bytes.len() < text.len() / 4);
/// let back: String = codec.decode(&bytes)?;
/// assert_eq!(back, text);
/// # Ok::<(), kuai_core::Error>(())
/// ```
///
/// Decoding checks the declared length against
/// [`Lz4::with_max_decompressed`] before allocating, so a tiny hostile input
/// cannot claim gigabytes.
#[derive(Debug, Clone, Copy)]
pub struct Lz4<C> {
    inner: C,
    max_decompressed: usize,
}

impl<C> Lz4<C> {
    /// Compresses what `inner` produces.
    pub const fn new(inner: C) -> Self {
        Lz4 {
            inner,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }

    /// The largest decompressed payload accepted, in bytes (capped at `u32::MAX`).
    pub const fn with_max_decompressed(mut self, bytes: usize) -> Self {
        self.max_decompressed = if bytes > u32::MAX as usize {
            u32::MAX as usize
        } else {
            bytes
        };
        self
    }

    /// The wrapped codec.
    pub const fn inner(&self) -> &C {
        &self.inner
    }
}

impl<T: ?Sized, C: Encoder<T>> Encoder<T> for Lz4<C> {
    fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()> {
        let mut raw = BytesMut::new();
        self.inner.encode(item, &mut raw)?;
        let len = u32::try_from(raw.len())
            .map_err(|_| CodecError::encode("lz4", "payload larger than 4 GiB"))?;
        let start = dst.len();
        dst.put_u32_le(len);
        let bound = lz4_flex::block::get_maximum_output_size(raw.len());
        dst.resize(start + 4 + bound, 0);
        match lz4_flex::block::compress_into(&raw, &mut dst[start + 4..]) {
            Ok(n) => {
                dst.truncate(start + 4 + n);
                Ok(())
            }
            Err(e) => {
                dst.truncate(start);
                Err(CodecError::encode("lz4", e).into())
            }
        }
    }
}

impl<T, C: Decoder<T>> Decoder<T> for Lz4<C> {
    fn decode(&self, src: &[u8]) -> Result<T> {
        let (len, body) = src
            .split_first_chunk::<4>()
            .ok_or_else(|| CodecError::malformed("lz4", "missing length header"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > self.max_decompressed {
            return Err(CodecError::TooLarge {
                what: "decompressed payload",
                len: len as u64,
                limit: self.max_decompressed as u64,
            }
            .into());
        }
        let mut out = vec![0u8; len];
        let n = lz4_flex::block::decompress_into(body, &mut out)
            .map_err(|e| CodecError::malformed("lz4", e))?;
        if n != len {
            return Err(CodecError::malformed(
                "lz4",
                format_args!("decompressed {n} bytes, header said {len}"),
            )
            .into());
        }
        self.inner.decode(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bincode;
    use kuai_core::ErrorKind;

    #[test]
    fn huge_declared_length_is_refused() {
        let codec = Lz4::new(Bincode::new()).with_max_decompressed(1024);
        let res: Result<Vec<u8>> = codec.decode(&[0xff, 0xff, 0xff, 0x7f, 0x00]);
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }

    #[test]
    fn garbage_is_corrupt() {
        let codec = Lz4::new(Bincode::new());
        for input in [
            &[][..],
            &[1, 0],
            &[10, 0, 0, 0, 0xff, 0xff],
            &[3, 0, 0, 0, 0x30, 1, 2],
        ] {
            let res: Result<Vec<u8>> = codec.decode(input);
            assert_eq!(
                res.map_err(|e| e.kind()),
                Err(ErrorKind::Corrupt),
                "{input:?}"
            );
        }
    }
}
