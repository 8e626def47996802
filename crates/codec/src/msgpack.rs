//! MessagePack (rmp-serde): compact binary, cross-language, self-describing.

use bytes::BytesMut;
use kuai_core::{Decoder, Encoder, Result};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::bytes_writer;
use crate::error::CodecError;

/// The default input limit of [`MsgPack`] and [`Json`](crate::Json): 16 MiB.
pub const DEFAULT_MAX_INPUT: usize = 16 << 20;

/// The default nesting limit of [`MsgPack`].
pub const DEFAULT_MSGPACK_DEPTH: usize = 128;

/// How [`MsgPack`] writes structs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StructMode {
    /// Structs as arrays of their fields, in declaration order: smallest, but
    /// fields are matched by position (like bincode).
    #[default]
    Compact,
    /// Structs as maps from field name to value: larger, but fields are
    /// matched by name, so adding, removing and reordering fields is safe.
    Named,
}

/// MessagePack through rmp-serde, for any `T: Serialize + DeserializeOwned`.
///
/// The reader accepts both struct encodings whatever the mode, so a
/// [`StructMode::Named`] writer can talk to a compact reader's type.
///
/// ```
/// use kuai_codec::MsgPack;
/// use kuai_core::{Decoder, Encoder};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Point { x: i32, y: i32 }
///
/// let compact = MsgPack::compact().encode_to_vec(&Point { x: 1, y: 2 })?;
/// let named = MsgPack::named().encode_to_vec(&Point { x: 1, y: 2 })?;
/// assert!(compact.len() < named.len());
/// let p: Point = MsgPack::compact().decode(&named)?;
/// assert_eq!(p, Point { x: 1, y: 2 });
/// # Ok::<(), kuai_core::Error>(())
/// ```
///
/// Decoding reads strings and byte arrays in place and rejects lengths beyond
/// the input, so a decode never allocates more than a small multiple of the
/// input, which itself is bounded by [`MsgPack::with_max_input`]. Nesting is
/// bounded by [`MsgPack::with_max_depth`]. Trailing bytes are an error.
#[derive(Debug, Clone, Copy)]
pub struct MsgPack {
    mode: StructMode,
    max_input: usize,
    max_depth: usize,
}

impl Default for MsgPack {
    fn default() -> Self {
        Self::compact()
    }
}

impl MsgPack {
    /// Structs as arrays ([`StructMode::Compact`]), the default.
    pub const fn compact() -> Self {
        MsgPack {
            mode: StructMode::Compact,
            max_input: DEFAULT_MAX_INPUT,
            max_depth: DEFAULT_MSGPACK_DEPTH,
        }
    }

    /// Structs as maps keyed by field name ([`StructMode::Named`]).
    pub const fn named() -> Self {
        MsgPack {
            mode: StructMode::Named,
            ..Self::compact()
        }
    }

    /// The largest input [`Decoder::decode`] accepts, in bytes.
    pub const fn with_max_input(mut self, bytes: usize) -> Self {
        self.max_input = bytes;
        self
    }

    /// The deepest nesting of arrays, maps and structs a decode accepts.
    pub const fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// How structs are written.
    pub const fn mode(&self) -> StructMode {
        self.mode
    }
}

impl<T: Serialize + ?Sized> Encoder<T> for MsgPack {
    #[inline]
    fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()> {
        bytes_writer::append_via_vec(dst, |w| match self.mode {
            StructMode::Compact => item.serialize(&mut rmp_serde::Serializer::new(w)),
            StructMode::Named => {
                item.serialize(&mut rmp_serde::Serializer::new(w).with_struct_map())
            }
        })
        .map_err(|e| CodecError::encode("msgpack", e).into())
    }
}

impl<T: DeserializeOwned> Decoder<T> for MsgPack {
    #[inline]
    fn decode(&self, src: &[u8]) -> Result<T> {
        if src.len() > self.max_input {
            return Err(too_large(src.len(), self.max_input));
        }
        let mut de = rmp_serde::Deserializer::from_read_ref(src);
        de.set_max_depth(self.max_depth);
        let value = T::deserialize(&mut de).map_err(|e| CodecError::malformed("msgpack", e))?;
        // Anything after the value is an error; the only acceptable outcome of
        // reading one more value is running out of input.
        match serde::de::IgnoredAny::deserialize(&mut de) {
            Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                Ok(value)
            }
            _ => Err(CodecError::malformed("msgpack", "trailing bytes after the value").into()),
        }
    }
}

#[cold]
pub(crate) fn too_large(len: usize, limit: usize) -> kuai_core::Error {
    CodecError::TooLarge {
        what: "input",
        len: len as u64,
        limit: limit as u64,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;

    #[test]
    fn trailing_bytes_are_corrupt() {
        let mut bytes = MsgPack::compact().encode_to_vec(&5u32).unwrap_or_default();
        bytes.push(0xc0);
        let res: Result<u32> = MsgPack::compact().decode(&bytes);
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }

    #[test]
    fn input_limit_applies() {
        let bytes = MsgPack::compact()
            .encode_to_vec(&"x".repeat(100))
            .unwrap_or_default();
        let res: Result<String> = MsgPack::compact().with_max_input(50).decode(&bytes);
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }

    #[test]
    fn deep_nesting_is_corrupt() {
        // 200 nested one-element arrays around a nil.
        let mut bytes = vec![0x91u8; 200];
        bytes.push(0xc0);
        let res: Result<serde_json::Value> = MsgPack::compact().decode(&bytes);
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
        // Within the limit it decodes.
        let ok: Result<serde_json::Value> = MsgPack::compact().with_max_depth(300).decode(&bytes);
        assert!(ok.is_ok());
    }

    #[test]
    fn huge_string_length_is_refused() {
        // str32 claiming 4 GiB with 3 bytes of body.
        let bytes = [0xdb, 0xff, 0xff, 0xff, 0xff, b'a', b'b', b'c'];
        let res: Result<String> = MsgPack::compact().decode(&bytes);
        assert_eq!(res.map_err(|e| e.kind()), Err(ErrorKind::Corrupt));
    }
}
