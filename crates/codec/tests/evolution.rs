//! Schema evolution: which codecs let an old reader and a new reader exchange
//! messages after a field is added, removed, renamed or reordered.
//!
//! Each case encodes with one version and decodes with the other, in both
//! directions, and classifies the outcome. The expected table below is the
//! one in `docs/codec.md`; if a dependency changes behaviour, this test fails.

use kuai_codec::schemas::{evolution_v1, evolution_v2};
use kuai_codec::{Bincode, FlatBuffers, Json, MsgPack};
use kuai_core::{Decoder, Encoder, ViewDecoder};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Version 1: the original message. `email` defaults, so a later version may
/// drop it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct V1 {
    id: u64,
    name: String,
    #[serde(default)]
    email: String,
}

/// Added: a new optional field at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    id: u64,
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    nickname: Option<String>,
}

/// Removed: `email` is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Removed {
    id: u64,
    name: String,
}

/// Renamed: `name` is now `display_name` (no serde alias).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Renamed {
    id: u64,
    display_name: String,
    #[serde(default)]
    email: String,
}

/// Reordered: the same fields declared in another order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reordered {
    email: String,
    name: String,
    id: u64,
}

/// What happened when one version read the other's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Decoded, and every field both versions share has the right value.
    Ok,
    /// Decoded, but with wrong values: the worst case. None of the cases
    /// below lands here today; the variant keeps the classification honest.
    #[allow(dead_code)]
    Silent,
    /// Refused with an error.
    Error,
}

use Outcome::{Error, Ok as Good};

const OLD: V1 = V1 {
    id: 42,
    name: String::new(),
    email: String::new(),
};

fn old() -> V1 {
    V1 {
        name: "Ada".into(),
        email: "ada@example.com".into(),
        ..OLD
    }
}

/// Encodes `from` with `codec`, decodes as `To`, and judges the result.
fn cross<C, From, To>(codec: &C, from: &From, ok: impl Fn(&To) -> bool) -> Outcome
where
    C: Encoder<From> + Decoder<To>,
{
    let Ok(bytes) = codec.encode_to_vec(from) else {
        return Error;
    };
    match codec.decode(&bytes) {
        Ok(to) if ok(&to) => Good,
        Ok(_) => Outcome::Silent,
        Err(_) => Error,
    }
}

/// The outcomes for one codec: (added, removed, renamed, reordered), each as
/// (new reader of old bytes, old reader of new bytes).
type Row = [(Outcome, Outcome); 4];

fn evolve<C>(codec: &C) -> Row
where
    C: Encoder<V1>
        + Decoder<V1>
        + Encoder<Added>
        + Decoder<Added>
        + Encoder<Removed>
        + Decoder<Removed>
        + Encoder<Renamed>
        + Decoder<Renamed>
        + Encoder<Reordered>
        + Decoder<Reordered>,
{
    let o = old();
    let same = |v: &V1| v.id == o.id && v.name == o.name;
    let added = Added {
        id: o.id,
        name: o.name.clone(),
        email: o.email.clone(),
        nickname: Some("ada".into()),
    };
    let removed = Removed {
        id: o.id,
        name: o.name.clone(),
    };
    let renamed = Renamed {
        id: o.id,
        display_name: o.name.clone(),
        email: o.email.clone(),
    };
    let reordered = Reordered {
        email: o.email.clone(),
        name: o.name.clone(),
        id: o.id,
    };
    [
        (
            cross(codec, &o, |n: &Added| {
                n.id == o.id && n.name == o.name && n.email == o.email && n.nickname.is_none()
            }),
            cross(codec, &added, |v: &V1| same(v) && v.email == o.email),
        ),
        (
            cross(codec, &o, |n: &Removed| n.id == o.id && n.name == o.name),
            cross(codec, &removed, same),
        ),
        (
            cross(codec, &o, |n: &Renamed| {
                n.id == o.id && n.display_name == o.name && n.email == o.email
            }),
            cross(codec, &renamed, |v: &V1| same(v) && v.email == o.email),
        ),
        (
            cross(codec, &o, |n: &Reordered| {
                n.id == o.id && n.name == o.name && n.email == o.email
            }),
            cross(codec, &reordered, |v: &V1| same(v) && v.email == o.email),
        ),
    ]
}

#[test]
fn bincode_tolerates_only_renames() {
    assert_eq!(
        evolve(&Bincode::new()),
        [(Error, Error), (Error, Error), (Good, Good), (Error, Error)]
    );
}

#[test]
fn msgpack_compact_tolerates_appended_fields_and_renames() {
    assert_eq!(
        evolve(&MsgPack::compact()),
        [(Good, Error), (Error, Good), (Good, Good), (Error, Error)]
    );
}

#[test]
fn msgpack_named_tolerates_all_but_renames() {
    assert_eq!(
        evolve(&MsgPack::named()),
        [(Good, Good), (Good, Good), (Error, Error), (Good, Good)]
    );
}

#[test]
fn json_tolerates_all_but_renames() {
    assert_eq!(
        evolve(&Json::new()),
        [(Good, Good), (Good, Good), (Error, Error), (Good, Good)]
    );
}

/// FlatBuffers: v2 adds `nickname` and `age`, deprecates `email` and renames
/// `name` to `display_name`, all in one step; fields keep explicit ids, so
/// declaration order does not matter.
#[test]
fn flatbuffers_tolerates_added_removed_renamed() {
    use evolution_v1 as v1;
    use evolution_v2 as v2;

    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let name = fbb.create_string("Ada");
    let email = fbb.create_string("ada@example.com");
    let root = v1::User::create(
        &mut fbb,
        &v1::UserArgs {
            id: 42,
            name: Some(name),
            email: Some(email),
        },
    );
    fbb.finish(root, None);
    let old_bytes = fbb.finished_data().to_vec();

    // New reader, old bytes: renamed field reads the old value, added fields
    // are absent (None / default).
    let new_reader = FlatBuffers::<v2::User<'static>>::new();
    let n = new_reader.view(&old_bytes).ok();
    assert_eq!(n.map(|u| u.id()), Some(42));
    assert_eq!(n.and_then(|u| u.display_name()), Some("Ada"));
    assert_eq!(n.and_then(|u| u.nickname()), None);
    assert_eq!(n.map(|u| u.age()), Some(0));

    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let name = fbb.create_string("Ada");
    let nick = fbb.create_string("ada");
    let root = v2::User::create(
        &mut fbb,
        &v2::UserArgs {
            id: 42,
            display_name: Some(name),
            nickname: Some(nick),
            age: 36,
        },
    );
    fbb.finish(root, None);
    let new_bytes = fbb.finished_data().to_vec();

    // Old reader, new bytes: unknown fields are skipped, the removed field is
    // absent, the renamed field is read under its old name.
    let old_reader = FlatBuffers::<v1::User<'static>>::new();
    let o = old_reader.view(&new_bytes).ok();
    assert_eq!(o.map(|u| u.id()), Some(42));
    assert_eq!(o.and_then(|u| u.name()), Some("Ada"));
    assert_eq!(o.and_then(|u| u.email()), None);
}

/// Decoding through the generic `Decoder` with explicit types, to keep the
/// helper honest: the same bytes decode back in the same version.
#[test]
fn same_version_always_round_trips() {
    fn check<C: Encoder<V1> + Decoder<V1>>(c: &C) {
        assert_eq!(cross(c, &old(), |v: &V1| *v == old()), Good);
    }
    check(&Bincode::new());
    check(&MsgPack::compact());
    check(&MsgPack::named());
    check(&Json::new());
    fn _bounds<T: Serialize + DeserializeOwned>() {}
}
