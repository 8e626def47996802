//! The on-disk record format.
//!
//! ```text
//! 0        4        8                16               24
//! | len u32 | crc u32 | offset u64     | timestamp u64  | payload … |
//! ```
//!
//! All integers little-endian. `len` counts the bytes after the CRC field
//! (`16 + payload.len()`); the CRC-32 (Castagnoli-free IEEE, `crc32fast`)
//! covers exactly those bytes, so a torn write, a flipped bit or a record
//! written for another offset is detected.

use bytes::Bytes;

/// Bytes before the payload.
pub(crate) const HEADER: usize = 24;
/// Bytes covered by `len` besides the payload.
const LEN_FIXED: usize = 16;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset (its position in the log, counted in records).
    pub offset: u64,
    /// Milliseconds since the Unix epoch when it was appended.
    pub timestamp_ms: u64,
    /// The message body (a slice of the read buffer: no per-record copy).
    pub payload: Bytes,
}

/// Appends one encoded record to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, offset: u64, timestamp_ms: u64, payload: &[u8]) {
    let len = (LEN_FIXED + payload.len()) as u32;
    let start = buf.len();
    buf.reserve(HEADER + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The size on disk of a record carrying `payload_len` bytes.
#[cfg(test)]
pub(crate) fn encoded_len(payload_len: usize) -> usize {
    HEADER + payload_len
}

/// A parsed header (not yet CRC-checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) crc: u32,
    pub(crate) offset: u64,
    pub(crate) timestamp_ms: u64,
}

impl Header {
    /// Parses the first [`HEADER`] bytes of `b` (which must be that long).
    pub(crate) fn parse(b: &[u8]) -> Option<Header> {
        let b = b.get(..HEADER)?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(Header {
            len: u32_at(0),
            crc: u32_at(4),
            offset: u64_at(8),
            timestamp_ms: u64_at(16),
        })
    }

    /// Total bytes on disk, if `len` is plausible for a payload of at most
    /// `max_payload` bytes.
    pub(crate) fn total_len(&self, max_payload: usize) -> Option<usize> {
        let len = self.len as usize;
        if len < LEN_FIXED || len - LEN_FIXED > max_payload {
            return None;
        }
        Some(8 + len)
    }
}

/// Checks the CRC of one whole encoded record (`rec` starts at the header).
pub(crate) fn crc_ok(rec: &[u8], header: &Header) -> bool {
    rec.len() >= HEADER && crc32fast::hash(&rec[8..]) == header.crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_parse_round_trip(offset in any::<u64>(), ts in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = vec![9u8; 3];
            encode(&mut buf, offset, ts, &payload);
            let rec = &buf[3..];
            prop_assert_eq!(rec.len(), encoded_len(payload.len()));
            let h = Header::parse(rec).expect("header");
            prop_assert_eq!(h.offset, offset);
            prop_assert_eq!(h.timestamp_ms, ts);
            prop_assert_eq!(h.total_len(1 << 20), Some(rec.len()));
            prop_assert!(crc_ok(rec, &h));
            prop_assert_eq!(&rec[HEADER..], &payload[..]);
        }

        #[test]
        fn any_single_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..64), bit in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode(&mut buf, 42, 7, &payload);
            let i = bit.index(buf.len() * 8);
            buf[i / 8] ^= 1 << (i % 8);
            let ok = Header::parse(&buf)
                .filter(|h| h.total_len(1 << 20) == Some(buf.len()))
                .is_some_and(|h| crc_ok(&buf, &h) && h.offset == 42);
            prop_assert!(!ok);
        }
    }

    #[test]
    fn implausible_lengths_are_refused() {
        let h = Header {
            len: 3,
            crc: 0,
            offset: 0,
            timestamp_ms: 0,
        };
        assert_eq!(h.total_len(100), None);
        let h = Header { len: 1000, ..h };
        assert_eq!(h.total_len(100), None);
        assert!(Header::parse(&[0u8; 5]).is_none());
    }
}
