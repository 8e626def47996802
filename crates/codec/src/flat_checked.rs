//! Checked FlatBuffers reads: every access bounds-checked as it happens,
//! instead of a verifier pass over the whole buffer first.
//!
//! A verified view ([`crate::FlatBuffers`]'s `view`) walks every table,
//! vector and string before the first read; for a message decoded once and
//! read once, that pass costs several times the read itself. [`CheckedTable`]
//! verifies only what is read, when it is read: the root offset, each
//! table's vtable, each field's bytes, each string's length and UTF-8. Bad
//! input gives [`Corrupt`](kuai_core::ErrorKind::Corrupt) at the access that
//! hits it; nothing is ever read out of bounds (there is no `unsafe` here).
//!
//! It reads through the slot constants of `flatc`'s generated code
//! (`FooBar::VT_NAME`, …) and rebuilds generated structs from their bytes.

use kuai_core::Result;

use crate::error::CodecError;

/// A little-endian scalar stored in a FlatBuffer.
pub trait FlatScalar: Copy {
    /// Its size in bytes.
    const SIZE: usize;
    /// Reads it from exactly [`Self::SIZE`] bytes.
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl FlatScalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn read_le(bytes: &[u8]) -> Self {
                let mut arr = [0u8; std::mem::size_of::<$t>()];
                arr.copy_from_slice(bytes);
                <$t>::from_le_bytes(arr)
            }
        }
    )*};
}

scalar!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

impl FlatScalar for bool {
    const SIZE: usize = 1;
    #[inline(always)]
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

#[cold]
#[inline(never)]
fn corrupt(what: &'static str) -> kuai_core::Error {
    CodecError::malformed("flatbuffers", what).into()
}

/// Reads a `u32` at `at`, bounds-checked.
#[inline(always)]
fn read_u32(buf: &[u8], at: usize) -> Result<usize> {
    match buf.get(at..at.wrapping_add(4)) {
        Some(b) => Ok(u32::read_le(b) as usize),
        None => Err(corrupt("offset out of bounds")),
    }
}

/// Follows the `uoffset` stored at `at`.
#[inline(always)]
fn follow(buf: &[u8], at: usize) -> Result<usize> {
    let off = read_u32(buf, at)?;
    let target = at
        .checked_add(off)
        .ok_or_else(|| corrupt("offset overflows"))?;
    if target >= buf.len() {
        return Err(corrupt("offset points past the end"));
    }
    Ok(target)
}

/// A table inside an untrusted buffer, read with a check at every access.
///
/// ```
/// use kuai_codec::CheckedTable;
/// use kuai_codec::schemas::evolution_v1::{User, UserArgs};
///
/// let mut fbb = flatbuffers::FlatBufferBuilder::new();
/// let name = fbb.create_string("Ada");
/// let root = User::create(&mut fbb, &UserArgs { id: 7, name: Some(name), email: None });
/// fbb.finish(root, None);
///
/// let user = CheckedTable::root(fbb.finished_data())?;
/// assert_eq!(user.scalar::<u64>(User::VT_ID, 0)?, 7);
/// assert_eq!(user.str(User::VT_NAME)?, Some("Ada"));
/// assert_eq!(user.str(User::VT_EMAIL)?, None);
/// assert!(CheckedTable::root(&[9, 0, 0, 0]).is_err());
/// # Ok::<(), kuai_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CheckedTable<'a> {
    buf: &'a [u8],
    loc: usize,
    /// The table's inline size (every field lies within `loc..loc + len`).
    len: usize,
    vtable: &'a [u8],
}

impl<'a> CheckedTable<'a> {
    /// The root table of a finished (non-size-prefixed) buffer.
    #[inline]
    pub fn root(buf: &'a [u8]) -> Result<Self> {
        let loc = read_u32(buf, 0)?;
        Self::at(buf, loc)
    }

    /// The table starting at byte `loc`.
    #[inline]
    fn at(buf: &'a [u8], loc: usize) -> Result<Self> {
        let soff = match buf.get(loc..loc.wrapping_add(4)) {
            Some(b) => i32::read_le(b),
            None => return Err(corrupt("table out of bounds")),
        };
        let vt = (loc as i64) - i64::from(soff);
        if vt < 0 {
            return Err(corrupt("vtable before the buffer"));
        }
        let vt = vt as usize;
        let vt_len = match buf.get(vt..vt.wrapping_add(2)) {
            Some(b) => u16::read_le(b) as usize,
            None => return Err(corrupt("vtable out of bounds")),
        };
        if vt_len < 4 || vt_len % 2 != 0 {
            return Err(corrupt("malformed vtable"));
        }
        let vtable = buf
            .get(vt..vt + vt_len)
            .ok_or_else(|| corrupt("vtable out of bounds"))?;
        let table_len = u16::read_le(&vtable[2..4]) as usize;
        if loc.checked_add(table_len).is_none_or(|end| end > buf.len()) || table_len < 4 {
            return Err(corrupt("table out of bounds"));
        }
        Ok(CheckedTable {
            buf,
            loc,
            len: table_len,
            vtable,
        })
    }

    /// Where field `slot` is stored, if present.
    #[inline(always)]
    fn field(&self, slot: u16, size: usize) -> Result<Option<usize>> {
        let slot = usize::from(slot);
        let off = match self.vtable.get(slot..slot + 2) {
            Some(b) => u16::read_le(b) as usize,
            None => return Ok(None), // written by an older schema: absent
        };
        if off == 0 {
            return Ok(None);
        }
        if off + size > self.len {
            return Err(corrupt("field outside its table"));
        }
        Ok(Some(self.loc + off))
    }

    /// A scalar field, or `default` when absent.
    #[inline]
    pub fn scalar<T: FlatScalar>(&self, slot: u16, default: T) -> Result<T> {
        Ok(match self.field(slot, T::SIZE)? {
            Some(at) => T::read_le(&self.buf[at..at + T::SIZE]),
            None => default,
        })
    }

    /// An inline struct field as its `N` bytes (build the generated struct
    /// with them, e.g. `Bar(bytes)`), or `None` when absent.
    #[inline]
    pub fn struct_bytes<const N: usize>(&self, slot: u16) -> Result<Option<[u8; N]>> {
        Ok(match self.field(slot, N)? {
            Some(at) => {
                let mut arr = [0u8; N];
                arr.copy_from_slice(&self.buf[at..at + N]);
                Some(arr)
            }
            None => None,
        })
    }

    /// A string field (UTF-8 checked), or `None` when absent.
    #[inline]
    pub fn str(&self, slot: u16) -> Result<Option<&'a str>> {
        match self.bytes(slot)? {
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| corrupt("string is not UTF-8")),
            None => Ok(None),
        }
    }

    /// A string or `[ubyte]` field as bytes, or `None` when absent.
    #[inline]
    pub fn bytes(&self, slot: u16) -> Result<Option<&'a [u8]>> {
        let Some(at) = self.field(slot, 4)? else {
            return Ok(None);
        };
        let target = follow(self.buf, at)?;
        let len = read_u32(self.buf, target)?;
        let start = target + 4;
        start
            .checked_add(len)
            .and_then(|end| self.buf.get(start..end))
            .map(Some)
            .ok_or_else(|| corrupt("vector out of bounds"))
    }

    /// A sub-table field, or `None` when absent.
    #[inline]
    pub fn table(&self, slot: u16) -> Result<Option<CheckedTable<'a>>> {
        let Some(at) = self.field(slot, 4)? else {
            return Ok(None);
        };
        Self::at(self.buf, follow(self.buf, at)?).map(Some)
    }

    /// A `[Table]` field, or `None` when absent.
    #[inline]
    pub fn tables(&self, slot: u16) -> Result<Option<CheckedTables<'a>>> {
        let Some(at) = self.field(slot, 4)? else {
            return Ok(None);
        };
        let target = follow(self.buf, at)?;
        let len = read_u32(self.buf, target)?;
        let start = target + 4;
        let end = len
            .checked_mul(4)
            .and_then(|bytes| start.checked_add(bytes))
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| corrupt("vector out of bounds"))?;
        debug_assert!(end >= start);
        Ok(Some(CheckedTables {
            buf: self.buf,
            start,
            len,
        }))
    }
}

/// A vector of tables inside an untrusted buffer; each element is checked
/// when it is read.
#[derive(Debug, Clone, Copy)]
pub struct CheckedTables<'a> {
    buf: &'a [u8],
    start: usize,
    len: usize,
}

impl<'a> CheckedTables<'a> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`, or an error if `i` is out of range or the element is bad.
    #[inline]
    pub fn get(&self, i: usize) -> Result<CheckedTable<'a>> {
        if i >= self.len {
            return Err(corrupt("vector index out of range"));
        }
        CheckedTable::at(self.buf, follow(self.buf, self.start + 4 * i)?)
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<CheckedTable<'a>>> + 'a {
        let this = *self;
        (0..self.len).map(move |i| this.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas::bench::{
        Bar, Enum, Foo, FooBar, FooBarArgs, FooBarContainer, FooBarContainerArgs,
    };
    use proptest::prelude::*;

    fn buffer() -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let mut list = Vec::new();
        for i in 0..3u16 {
            let name = fbb.create_string("Hello, World!");
            let parent = Foo::new(u64::from(i) + 1, 10, 64, 1000);
            let bar = Bar::new(&parent, 5, 1.5, 100 + i);
            list.push(FooBar::create(
                &mut fbb,
                &FooBarArgs {
                    sibling: Some(&bar),
                    name: Some(name),
                    rating: 2.5,
                    postfix: 33,
                },
            ));
        }
        let list = fbb.create_vector(&list);
        let location = fbb.create_string("somewhere");
        let root = FooBarContainer::create(
            &mut fbb,
            &FooBarContainerArgs {
                list: Some(list),
                initialized: true,
                fruit: Enum::Pears,
                location: Some(location),
            },
        );
        fbb.finish(root, None);
        fbb.finished_data().to_vec()
    }

    /// Reads everything through checked accessors.
    fn read_all(buf: &[u8]) -> Result<Vec<String>> {
        let c = CheckedTable::root(buf)?;
        let mut out = vec![
            format!(
                "{}",
                c.scalar::<bool>(FooBarContainer::VT_INITIALIZED, false)?
            ),
            format!("{}", c.scalar::<i16>(FooBarContainer::VT_FRUIT, 0)?),
            format!("{:?}", c.str(FooBarContainer::VT_LOCATION)?),
        ];
        if let Some(list) = c.tables(FooBarContainer::VT_LIST)? {
            for f in list.iter() {
                let f = f?;
                let bar = f.struct_bytes::<32>(FooBar::VT_SIBLING)?.map(Bar);
                out.push(format!(
                    "{:?} {} {} {:?}",
                    f.str(FooBar::VT_NAME)?,
                    f.scalar::<f64>(FooBar::VT_RATING, 0.0)?,
                    f.scalar::<u8>(FooBar::VT_POSTFIX, 0)?,
                    bar.map(|b| (b.parent().id(), b.size(), b.time())),
                ));
            }
        }
        Ok(out)
    }

    /// The same through the generated (verified) accessors.
    fn read_verified(buf: &[u8]) -> Option<Vec<String>> {
        let c = flatbuffers::root::<FooBarContainer<'_>>(buf).ok()?;
        let mut out = vec![
            format!("{}", c.initialized()),
            format!("{}", c.fruit().0),
            format!("{:?}", c.location()),
        ];
        for f in c.list().iter().flatten() {
            out.push(format!(
                "{:?} {} {} {:?}",
                f.name(),
                f.rating(),
                f.postfix(),
                f.sibling().map(|b| (b.parent().id(), b.size(), b.time())),
            ));
        }
        Some(out)
    }

    #[test]
    fn checked_reads_match_generated_accessors() {
        let buf = buffer();
        assert_eq!(std::mem::size_of::<Bar>(), 32);
        let checked = read_all(&buf).ok();
        assert!(checked.is_some());
        assert_eq!(checked, read_verified(&buf));
    }

    #[test]
    fn every_truncation_fails_or_reads_the_same() {
        let buf = buffer();
        let full = read_all(&buf).ok();
        for cut in 0..buf.len() {
            if let Ok(v) = read_all(&buf[..cut]) {
                assert_eq!(Some(v), full, "cut at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn bit_flips_never_panic(bit in any::<prop::sample::Index>()) {
            let mut buf = buffer();
            let i = bit.index(buf.len() * 8);
            buf[i / 8] ^= 1 << (i % 8);
            let _ = read_all(&buf);
        }

        #[test]
        fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = read_all(&buf);
        }
    }
}
