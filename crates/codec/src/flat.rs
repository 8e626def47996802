//! FlatBuffers: schema-defined, zero-copy reads, verified by default.

use std::cell::RefCell;
use std::marker::PhantomData;

use bytes::BytesMut;
use flatbuffers::{FlatBufferBuilder, Follow, Verifiable, VerifierOptions, WIPOffset};
use kuai_core::{Decoder, Encoder, Result, ViewDecoder};

use crate::error::CodecError;
use crate::msgpack::{DEFAULT_MAX_INPUT, too_large};

/// Names the root table of a FlatBuffers schema, so [`FlatBuffers`] can
/// return a view borrowing the input for any lifetime.
///
/// Implement it for the `'static` instance of a `flatc`-generated table:
///
/// ```ignore
/// impl kuai_codec::FlatRoot for my_schema::Order<'static> {
///     type Table<'a> = my_schema::Order<'a>;
/// }
/// ```
///
/// The schemas shipped in [`crate::schemas`] already implement it.
pub trait FlatRoot {
    /// The generated table type, borrowing a buffer for `'a`.
    type Table<'a>: Follow<'a, Inner = Self::Table<'a>> + Verifiable + 'a;
}

/// Writes a value as the root table `R` of a FlatBuffer.
pub trait ToFlat<R: FlatRoot> {
    /// Builds the value with `fbb` and returns the offset of the root table.
    fn to_flat<'b>(&self, fbb: &mut FlatBufferBuilder<'b>) -> WIPOffset<R::Table<'b>>;
}

/// Reads an owned value from a verified root table `R`.
pub trait FromFlat<R: FlatRoot>: Sized {
    /// Copies what the value needs out of the view.
    fn from_flat(view: R::Table<'_>) -> Self;
}

/// The FlatBuffers codec for root table `R`.
///
/// - [`ViewDecoder::view`] **verifies** the buffer (bounds, alignment, UTF-8,
///   nesting depth, table count) and returns the generated table type, which
///   reads fields straight from the input: no allocation, no copy. The view is
///   `Copy`; verifying once and traversing many times costs one verification.
/// - [`FlatBuffers::view_unchecked`] skips verification. It is `unsafe`: only
///   for bytes this process wrote itself or otherwise trusts.
/// - [`Encoder`] for types implementing [`ToFlat`], using a builder reused per
///   thread; [`Decoder`] for types implementing [`FromFlat`].
///
/// ```
/// use kuai_codec::FlatBuffers;
/// use kuai_codec::schemas::bench::{self, FooBarContainer};
/// use kuai_core::{ErrorKind, ViewDecoder};
///
/// let mut fbb = flatbuffers::FlatBufferBuilder::new();
/// let location = fbb.create_string("here");
/// let root = FooBarContainer::create(&mut fbb, &bench::FooBarContainerArgs {
///     location: Some(location), initialized: true, ..Default::default()
/// });
/// fbb.finish(root, None);
///
/// let codec = FlatBuffers::<FooBarContainer<'static>>::new();
/// let view = codec.view(fbb.finished_data())?;
/// assert_eq!(view.location(), Some("here"));
/// assert!(view.initialized());
///
/// let err = codec.view(&[0xff; 3]).map(|_| ()).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Corrupt);
/// # Ok::<(), kuai_core::Error>(())
/// ```
pub struct FlatBuffers<R> {
    opts: VerifierOptions,
    max_input: usize,
    root: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for FlatBuffers<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatBuffers")
            .field("root", &std::any::type_name::<R>())
            .field("max_input", &self.max_input)
            .field("verifier", &self.opts)
            .finish()
    }
}

impl<R> Clone for FlatBuffers<R> {
    fn clone(&self) -> Self {
        FlatBuffers {
            opts: self.opts.clone(),
            max_input: self.max_input,
            root: PhantomData,
        }
    }
}

impl<R> Default for FlatBuffers<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> FlatBuffers<R> {
    /// The codec with flatbuffers' default verifier limits (depth 64, one
    /// million tables) and a 16 MiB input limit.
    pub fn new() -> Self {
        FlatBuffers {
            opts: VerifierOptions::default(),
            max_input: DEFAULT_MAX_INPUT,
            root: PhantomData,
        }
    }

    /// The largest buffer accepted, in bytes.
    pub fn with_max_input(mut self, bytes: usize) -> Self {
        self.max_input = bytes;
        self
    }

    /// The deepest nesting of tables the verifier accepts.
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.opts.max_depth = depth;
        self
    }

    /// The most tables the verifier accepts in one buffer.
    pub fn with_max_tables(mut self, tables: usize) -> Self {
        self.opts.max_tables = tables;
        self
    }

    /// The verifier options in use.
    pub fn verifier_options(&self) -> &VerifierOptions {
        &self.opts
    }
}

impl<R: FlatRoot> FlatBuffers<R> {
    /// Returns the root table of `src` **without verifying it**.
    ///
    /// # Safety
    ///
    /// `src` must be a valid FlatBuffer whose root is `R` — for example bytes
    /// that this process built itself, or that [`ViewDecoder::view`] already
    /// verified. Reading fields of a view over invalid bytes is undefined
    /// behaviour (out-of-bounds reads, invalid `&str`).
    #[allow(unsafe_code)]
    #[inline]
    pub unsafe fn view_unchecked<'a>(&self, src: &'a [u8]) -> R::Table<'a> {
        // SAFETY: the caller promises `src` is a valid buffer with root `R`,
        // which is exactly `root_unchecked`'s contract.
        unsafe { flatbuffers::root_unchecked::<R::Table<'a>>(src) }
    }
}

impl<R: FlatRoot> ViewDecoder for FlatBuffers<R> {
    type View<'a> = R::Table<'a>;

    #[inline]
    fn view<'a>(&self, src: &'a [u8]) -> Result<R::Table<'a>> {
        if src.len() > self.max_input {
            return Err(too_large(src.len(), self.max_input));
        }
        flatbuffers::root_with_opts::<R::Table<'a>>(&self.opts, src)
            .map_err(|e| CodecError::malformed("flatbuffers", e).into())
    }
}

impl<R: FlatRoot, T: FromFlat<R>> Decoder<T> for FlatBuffers<R> {
    fn decode(&self, src: &[u8]) -> Result<T> {
        self.view(src).map(T::from_flat)
    }
}

thread_local! {
    static BUILDER: RefCell<FlatBufferBuilder<'static>> = RefCell::new(FlatBufferBuilder::with_capacity(1024));
}

/// The largest builder kept for reuse between encodes; bigger ones are dropped.
const MAX_KEPT_BUILDER: usize = 1 << 20;

impl<R: FlatRoot, T: ToFlat<R> + ?Sized> Encoder<T> for FlatBuffers<R> {
    fn encode(&self, item: &T, dst: &mut BytesMut) -> Result<()> {
        fn build<R: FlatRoot, T: ToFlat<R> + ?Sized>(
            fbb: &mut FlatBufferBuilder<'static>,
            item: &T,
            dst: &mut BytesMut,
        ) {
            fbb.reset();
            let root = item.to_flat(fbb);
            fbb.finish(root, None);
            dst.extend_from_slice(fbb.finished_data());
        }
        BUILDER.with(|cell| match cell.try_borrow_mut() {
            Ok(mut fbb) => {
                build(&mut fbb, item, dst);
                if fbb.finished_data().len() > MAX_KEPT_BUILDER {
                    *fbb = FlatBufferBuilder::with_capacity(1024);
                }
            }
            // Re-entrant encode (a ToFlat impl encoding another value): use a
            // fresh builder rather than panic.
            Err(_) => build(&mut FlatBufferBuilder::new(), item, dst),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas::evolution_v1::{User, UserArgs};
    use kuai_core::ErrorKind;

    #[derive(Debug, Clone, PartialEq)]
    struct OwnedUser {
        id: u64,
        name: String,
    }

    impl ToFlat<User<'static>> for OwnedUser {
        fn to_flat<'b>(&self, fbb: &mut FlatBufferBuilder<'b>) -> WIPOffset<User<'b>> {
            let name = fbb.create_string(&self.name);
            User::create(
                fbb,
                &UserArgs {
                    id: self.id,
                    name: Some(name),
                    email: None,
                },
            )
        }
    }

    impl FromFlat<User<'static>> for OwnedUser {
        fn from_flat(view: User<'_>) -> Self {
            OwnedUser {
                id: view.id(),
                name: view.name().unwrap_or_default().to_string(),
            }
        }
    }

    /// A value whose encoding encodes another value on the same thread.
    struct Nested(OwnedUser);

    impl ToFlat<User<'static>> for Nested {
        fn to_flat<'b>(&self, fbb: &mut FlatBufferBuilder<'b>) -> WIPOffset<User<'b>> {
            let inner = FlatBuffers::<User<'static>>::new()
                .encode_to_vec(&self.0)
                .unwrap_or_default();
            let name = fbb.create_string(&format!("{} bytes inside", inner.len()));
            User::create(
                fbb,
                &UserArgs {
                    id: self.0.id,
                    name: Some(name),
                    email: None,
                },
            )
        }
    }

    #[test]
    fn owned_round_trip_through_encoder_and_decoder() {
        let codec = FlatBuffers::<User<'static>>::new();
        let user = OwnedUser {
            id: 7,
            name: "Ada".into(),
        };
        let mut buf = BytesMut::from(&b"prefix"[..]);
        assert!(codec.encode(&user, &mut buf).is_ok());
        assert_eq!(&buf[..6], b"prefix");
        let back: Result<OwnedUser> = codec.decode(&buf[6..]);
        assert_eq!(back.ok(), Some(user.clone()));
        // Encoding twice reuses the per-thread builder and gives the same bytes.
        let a = codec.encode_to_vec(&user).unwrap_or_default();
        let b = codec.encode_to_vec(&user).unwrap_or_default();
        assert_eq!(a, b);
    }

    #[test]
    fn reentrant_encode_does_not_panic() {
        let codec = FlatBuffers::<User<'static>>::new();
        let bytes = codec
            .encode_to_vec(&Nested(OwnedUser {
                id: 1,
                name: "x".into(),
            }))
            .unwrap_or_default();
        let view = codec.view(&bytes).ok();
        assert_eq!(view.map(|u| u.id()), Some(1));
        assert!(
            view.and_then(|u| u.name())
                .is_some_and(|n| n.ends_with("bytes inside"))
        );
    }

    #[test]
    fn limits_apply() {
        let user = OwnedUser {
            id: 1,
            name: "a long enough name".into(),
        };
        let codec = FlatBuffers::<User<'static>>::new();
        let bytes = codec.encode_to_vec(&user).unwrap_or_default();
        let small = codec.clone().with_max_input(bytes.len() - 1);
        assert_eq!(
            small.view(&bytes).map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::Corrupt)
        );
        let shallow = codec.clone().with_max_tables(0);
        assert!(shallow.view(&bytes).is_err());
        assert_eq!(codec.verifier_options().max_depth, 64);
        assert!(format!("{codec:?}").contains("User"));
        // SAFETY: `bytes` was just built by this codec.
        #[allow(unsafe_code)]
        let unchecked = unsafe { codec.view_unchecked(&bytes) };
        assert_eq!(unchecked.id(), 1);
    }
}
