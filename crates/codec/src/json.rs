//! JSON (serde_json): the human-readable, universally supported baseline.

use bytes::BytesMut;
use kuai_core::{Decoder, Encoder, Result};
use serde::{Serialize, de::DeserializeOwned};

use crate::bytes_writer;
use crate::error::CodecError;
use crate::msgpack::{DEFAULT_MAX_INPUT, too_large};

/// Compact JSON through serde_json, for any `T: Serialize + DeserializeOwned`.
///
/// ```
/// use kuai_codec::Json;
/// use kuai_core::{Decoder, Encoder};
///
/// let bytes = Json::new().encode_to_vec(&vec![1, 2, 3])?;
/// assert_eq!(bytes, b"[1,2,3]");
/// let back: Vec<i32> = Json::new().decode(&bytes)?;
/// assert_eq!(back, vec![1, 2, 3]);
/// # Ok::<(), kuai_core::Error>(())
/// ```
///
/// Nesting is limited by serde_json (128 levels); the input size by
/// [`Json::with_max_input`]. Trailing non-whitespace is an error.
#[derive(Debug, Clone, Copy)]
pub struct Json {
    max_input: usize,
}

impl Default for Json {
    fn default() -> Self {
        Self::new()
    }
}

impl Json {
    /// The codec with the default input limit ([`DEFAULT_MAX_INPUT`]).
    pub const fn new() -> Self {
        Json {
            max_input: DEFAULT_MAX_INPUT,
        }
    }

    /// The largest input [`Decoder::decode`] accepts, in bytes.
    pub const fn with_max_input(mut self, bytes: usize) -> Self {
        self.max_input = bytes;
        self
    }
}

impl<T: Serialize + ?Sized> Encoder<T> for Json {
    #[inline]
    fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()> {
        bytes_writer::append(dst, |w| serde_json::to_writer(w, item))
            .map_err(|e| CodecError::encode("json", e).into())
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    #[inline]
    fn decode(&self, src: &[u8]) -> Result<T> {
        if src.len() > self.max_input {
            return Err(too_large(src.len(), self.max_input));
        }
        serde_json::from_slice(src).map_err(|e| CodecError::malformed("json", e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;
    use std::collections::HashMap;

    #[test]
    fn deep_nesting_is_corrupt() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let res: Result<serde_json::Value> = Json::new().decode(deep.as_bytes());
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }

    #[test]
    fn non_string_keys_are_invalid_input() {
        let mut m = HashMap::new();
        m.insert(vec![1u8], 1);
        let res = Json::new().encode_to_vec(&m);
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::InvalidInput));
        // A failed encode leaves the buffer as it was.
        let mut dst = BytesMut::from(&b"kept"[..]);
        assert!(Json::new().encode(&vec![m], &mut dst).is_err());
        assert_eq!(&dst[..], b"kept");
    }

    #[test]
    fn trailing_garbage_is_corrupt() {
        let res: Result<u32> = Json::new().decode(b"1 x");
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
        let too_big: Result<u32> = Json::new().with_max_input(1).decode(b"12");
        assert_eq!(too_big.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }
}
