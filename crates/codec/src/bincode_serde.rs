//! bincode 2 (through serde): the smallest and fastest of the serde codecs,
//! Rust-only, with no schema evolution.
//!
//! bincode is flagged unmaintained by RustSec (RUSTSEC-2025-0141); see
//! `docs/codec.md` for what to do about it.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bytes::BytesMut;
use kuai_core::{Decoder, Encoder, Result};
use serde::{Serialize, de::DeserializeOwned};

use crate::bytes_writer;
use crate::error::CodecError;

/// The default decode limit of [`Bincode`]: 16 MiB.
pub const DEFAULT_BINCODE_LIMIT: usize = 16 << 20;

type Config<const LIMIT: usize> = Configuration<LittleEndian, Varint, Limit<LIMIT>>;

/// bincode 2's `standard()` format (little-endian, varint integers) through
/// serde, for any `T: Serialize + DeserializeOwned`.
///
/// `LIMIT` bounds the bytes a decode may claim: a hostile string or byte
/// length makes bincode allocate at most `LIMIT` bytes before the decode
/// fails (sequences are pre-allocated by serde, which caps its length hint at
/// 1 MiB, so the bound there is `max(LIMIT, 1 MiB)`). bincode takes its limit
/// as a compile-time constant, hence the const parameter:
///
/// ```
/// use kuai_codec::Bincode;
/// use kuai_core::{Decoder, Encoder, ErrorKind};
///
/// let codec = Bincode::new().with_limit::<1024>();
/// let bytes = codec.encode_to_vec(&vec![7u32; 10])?;
/// let back: Vec<u32> = codec.decode(&bytes)?;
/// assert_eq!(back, vec![7u32; 10]);
///
/// // A 2 KiB string does not fit the 1 KiB limit.
/// let big = Bincode::new().encode_to_vec(&"x".repeat(2048))?;
/// let err = Decoder::<String>::decode(&codec, &big).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Corrupt);
/// # Ok::<(), kuai_core::Error>(())
/// ```
///
/// The input must hold exactly one value: trailing bytes are an error. bincode
/// has no nesting limit; recursive types decoded from untrusted input should
/// use a small `LIMIT` (each level costs at least one byte) or another codec.
#[derive(Clone, Copy, Default)]
pub struct Bincode<const LIMIT: usize = DEFAULT_BINCODE_LIMIT>;

impl Bincode<DEFAULT_BINCODE_LIMIT> {
    /// The codec with the default limit ([`DEFAULT_BINCODE_LIMIT`]).
    pub const fn new() -> Self {
        Bincode
    }
}

impl<const LIMIT: usize> Bincode<LIMIT> {
    /// The same codec with another decode limit, in bytes.
    pub const fn with_limit<const NEW: usize>(self) -> Bincode<NEW> {
        Bincode
    }

    /// The decode limit, in bytes.
    pub const fn limit(&self) -> usize {
        LIMIT
    }

    /// The bincode configuration this codec uses, for calling bincode
    /// directly with identical settings.
    pub const fn config(&self) -> Config<LIMIT> {
        bincode::config::standard().with_limit::<LIMIT>()
    }
}

impl<const LIMIT: usize> std::fmt::Debug for Bincode<LIMIT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bincode").field("limit", &LIMIT).finish()
    }
}

impl<T: Serialize + ?Sized, const LIMIT: usize> Encoder<T> for Bincode<LIMIT> {
    #[inline]
    fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()> {
        bytes_writer::append(dst, |w| {
            bincode::serde::encode_into_writer(item, w, self.config())
        })
        .map_err(|e| CodecError::encode("bincode", e).into())
    }
}

impl<T: DeserializeOwned, const LIMIT: usize> Decoder<T> for Bincode<LIMIT> {
    #[inline]
    fn decode(&self, src: &[u8]) -> Result<T> {
        let (value, read) = bincode::serde::decode_from_slice::<T, _>(src, self.config())
            .map_err(|e| CodecError::malformed("bincode", e))?;
        if read != src.len() {
            return Err(trailing(src.len() - read));
        }
        Ok(value)
    }
}

#[cold]
fn trailing(extra: usize) -> kuai_core::Error {
    CodecError::malformed("bincode", format_args!("{extra} trailing bytes")).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;

    #[test]
    fn trailing_bytes_are_corrupt() {
        let mut bytes = Bincode::new().encode_to_vec(&5u32).unwrap_or_default();
        bytes.push(0);
        let err = Decoder::<u32>::decode(&Bincode::new(), &bytes).map(|_| ());
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        // A Vec<u8> claiming u64::MAX / 2 elements, followed by nothing.
        let mut bytes = vec![0xFDu8]; // varint marker for a u64
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        let res: Result<Vec<u8>> = Bincode::new().with_limit::<4096>().decode(&bytes);
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }

    #[test]
    fn limit_is_reported() {
        assert_eq!(Bincode::new().limit(), DEFAULT_BINCODE_LIMIT);
        assert_eq!(Bincode::new().with_limit::<64>().limit(), 64);
        assert!(format!("{:?}", Bincode::new()).contains("limit"));
    }
}
