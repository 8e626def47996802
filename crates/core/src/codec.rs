//! Turning values into bytes and back.
//!
//! Three traits, so that a zero-copy format can offer a borrowed view without
//! forcing every other codec to allocate, and a serde codec can decode owned
//! values without pretending to be zero-copy:
//!
//! - [`Encoder<T>`] writes a `T` into a [`BytesMut`].
//! - [`Decoder<T>`] reads an owned `T` from bytes.
//! - [`ViewDecoder`] reads a borrowed view that points into the input.
//!
//! Decoders must treat their input as hostile: bad bytes give an error of kind
//! [`Corrupt`](crate::ErrorKind::Corrupt), never a panic, a hang, or an
//! allocation beyond the codec's configured limit.

use std::sync::Arc;

use bytes::BytesMut;

use crate::Result;

/// Writes values of type `T` as bytes.
pub trait Encoder<T: ?Sized> {
    /// Appends the encoding of `item` to `dst`.
    fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()>;

    /// Encodes into a fresh buffer.
    fn encode_to_vec(&self, item: &T) -> Result<Vec<u8>> {
        let mut buf = BytesMut::new();
        self.encode(item, &mut buf)?;
        Ok(buf.to_vec())
    }
}

/// Reads owned values of type `T` from bytes.
pub trait Decoder<T> {
    /// Decodes one value that occupies all of `src`.
    fn decode(&self, src: &[u8]) -> Result<T>;
}

/// Reads a borrowed, zero-copy view from bytes.
///
/// The view borrows `src`; reading fields of the view reads `src` directly.
/// Implementations verify the input by default.
pub trait ViewDecoder {
    /// The view type, borrowing the input for `'a`.
    type View<'a>;

    /// Verifies `src` and returns a view into it.
    fn view<'a>(&self, src: &'a [u8]) -> Result<Self::View<'a>>;
}

macro_rules! forward_codec {
    ($($ptr:ty),*) => {$(
        impl<T: ?Sized, C: Encoder<T> + ?Sized> Encoder<T> for $ptr {
            fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()> {
                (**self).encode(item, dst)
            }
        }
        impl<T, C: Decoder<T> + ?Sized> Decoder<T> for $ptr {
            fn decode(&self, src: &[u8]) -> Result<T> {
                (**self).decode(src)
            }
        }
    )*};
}

forward_codec!(&C, Box<C>, Arc<C>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, ErrorKind};
    use proptest::prelude::*;

    /// A tiny fixed-width codec proving the traits are implementable and
    /// composable through pointers.
    struct U32Le;

    impl Encoder<u32> for U32Le {
        fn encode(&self, item: &u32, dst: &mut BytesMut) -> Result<()> {
            dst.extend_from_slice(&item.to_le_bytes());
            Ok(())
        }
    }

    impl Decoder<u32> for U32Le {
        fn decode(&self, src: &[u8]) -> Result<u32> {
            let arr: [u8; 4] = src
                .try_into()
                .map_err(|_| Error::corrupt(format!("u32 needs 4 bytes, got {}", src.len())))?;
            Ok(u32::from_le_bytes(arr))
        }
    }

    /// A view decoder that borrows a length-prefixed string.
    struct StrView;

    impl ViewDecoder for StrView {
        type View<'a> = &'a str;
        fn view<'a>(&self, src: &'a [u8]) -> Result<&'a str> {
            let (&len, rest) = src
                .split_first()
                .ok_or_else(|| Error::corrupt("empty input"))?;
            let body = rest
                .get(..usize::from(len))
                .ok_or_else(|| Error::corrupt("truncated"))?;
            std::str::from_utf8(body).map_err(|_| Error::corrupt("not utf-8"))
        }
    }

    #[test]
    fn view_points_into_input() {
        let input = b"\x05hello world";
        let v = StrView.view(input).unwrap_or_default();
        assert_eq!(v, "hello");
        assert_eq!(v.as_ptr(), input[1..].as_ptr());
        assert_eq!(
            StrView.view(b"\x09abc").map_err(|e| e.kind()),
            Err(ErrorKind::Corrupt)
        );
    }

    proptest! {
        #[test]
        fn round_trip_through_any_pointer(x: u32) {
            let boxed: Box<U32Le> = Box::new(U32Le);
            let arc = Arc::new(U32Le);
            let bytes = boxed.encode_to_vec(&x).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(arc.decode(&bytes).ok(), Some(x));
            let by_ref: &U32Le = &U32Le;
            prop_assert_eq!(Decoder::<u32>::decode(&by_ref, &bytes).ok(), Some(x));
        }

        #[test]
        fn bad_input_is_corrupt_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            match U32Le.decode(&bytes) {
                Ok(_) => prop_assert_eq!(bytes.len(), 4),
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Corrupt),
            }
        }
    }
}
