//! `kuai-codec`: one codec interface over bincode, MessagePack, JSON and
//! FlatBuffers, plus length-delimited framing.
//!
//! Every codec implements [`kuai_core`]'s traits: [`Encoder<T>`] appends a
//! value to a `BytesMut`, [`Decoder<T>`] reads an owned value, and
//! [`ViewDecoder`] (FlatBuffers only) returns a zero-copy view borrowing the
//! input. Code written against the traits can switch formats by changing one
//! type.
//!
//! | codec | format | schema | zero-copy | cross-language | evolution |
//! |---|---|---|---|---|---|
//! | [`Bincode`] | bincode 2 `standard()` via serde | Rust types | no | no | renames only (positional) |
//! | [`MsgPack::compact`] | MessagePack, structs as arrays | Rust types | no | yes | renames; new readers accept old data without appended fields |
//! | [`MsgPack::named`] | MessagePack, structs as maps | Rust types | no | yes | add / remove / reorder |
//! | [`Json`] | JSON via serde_json | Rust types | no | yes | add / remove / reorder |
//! | [`FlatBuffers`] | FlatBuffers | `.fbs` + `flatc` | **yes** | yes | add / deprecate / rename (reorder with `id:`) |
//!
//! FlatBuffers can be read three ways: a verified view
//! ([`ViewDecoder::view`]: one verifier pass, then free reads), checked reads
//! ([`CheckedTable`]: each access checked as it happens, cheapest for a
//! message read once) and the `unsafe` [`FlatBuffers::view_unchecked`] for
//! bytes the process trusts.
//!
//! `docs/codec.md` has the measurements and a selection guide.
//!
//! # When to use it
//!
//! When a service picks a wire or storage format and wants to measure or
//! change that choice without touching callers; when bytes come from
//! untrusted peers (every decoder has a size limit and turns bad input into
//! [`ErrorKind::Corrupt`](kuai_core::ErrorKind::Corrupt)); when messages
//! travel over a stream and need framing ([`FrameCodec`], [`MessageCodec`]).
//!
//! # Example
//!
//! ```
//! use kuai_codec::{Bincode, FrameCodec, Json, MessageCodec, MsgPack};
//! use kuai_core::{Decoder, Encoder};
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Order { id: u64, item: String, qty: u32 }
//!
//! fn round_trip<C: Encoder<Order> + Decoder<Order>>(codec: C) -> kuai_core::Result<usize> {
//!     let order = Order { id: 7, item: "tea".into(), qty: 2 };
//!     let bytes = codec.encode_to_vec(&order)?;
//!     assert_eq!(codec.decode(&bytes)?, order);
//!     Ok(bytes.len())
//! }
//! assert!(round_trip(Bincode::new())? < round_trip(MsgPack::named())?);
//! assert!(round_trip(MsgPack::compact())? < round_trip(Json::new())?);
//!
//! // The same codecs inside length-prefixed frames.
//! let frames = MessageCodec::<_, Order>::new(FrameCodec::varint(), MsgPack::compact());
//! let mut buf = bytes::BytesMut::new();
//! frames.encode(&Order { id: 1, item: "milk".into(), qty: 1 }, &mut buf)?;
//! assert_eq!(frames.decode(&mut buf)?.map(|o| o.id), Some(1));
//! # Ok::<(), kuai_core::Error>(())
//! ```
//!
//! # Feature flags
//!
//! - `tokio`: [`FrameCodec`] and [`MessageCodec`] implement
//!   `tokio_util::codec::{Encoder, Decoder}`.
//! - `lz4`: [`Lz4`], LZ4 compression around any codec (pure Rust, `lz4_flex`).
//!
//! # Unsafe code
//!
//! The crate denies `unsafe` except in two places: the `flatc`-generated code
//! in [`schemas`], and [`FlatBuffers::view_unchecked`], the opt-in
//! unverified read. Verified reads are the default.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod bincode_serde;
mod bytes_writer;
#[cfg(feature = "lz4")]
mod compress;
mod error;
mod flat;
mod flat_checked;
mod frame;
mod json;
mod msgpack;
pub mod schemas;

pub use bincode_serde::{Bincode, DEFAULT_BINCODE_LIMIT};
#[cfg(feature = "lz4")]
pub use compress::{DEFAULT_MAX_DECOMPRESSED, Lz4};
pub use error::CodecError;
pub use flat::{FlatBuffers, FlatRoot, FromFlat, ToFlat};
pub use flat_checked::{CheckedTable, CheckedTables, FlatScalar};
pub use frame::{DEFAULT_MAX_FRAME, FrameCodec, LengthPrefix, MessageCodec};
pub use json::Json;
pub use msgpack::{DEFAULT_MAX_INPUT, DEFAULT_MSGPACK_DEPTH, MsgPack, StructMode};

/// The shared error type every codec returns; see [`CodecError`] for the
/// details it carries.
pub use kuai_core::Error;
/// The codec traits, re-exported for convenience.
pub use kuai_core::{Decoder, Encoder, ViewDecoder};
