//! Log positions, sessions and signed session tokens.
//!
//! A [`Session`] remembers the log position of the client's last write and
//! the newest position it has read. It travels between requests as a
//! [`TokenSigner`]-signed string (a cookie, a header): the server never
//! trusts a token it did not sign, because a forged "I have written
//! nothing" token would let a read skip the replica-freshness check.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::StoreError;

/// A position in the primary's replication log: a PostgreSQL WAL LSN, or an
/// entry count for the embedded backend. Larger is newer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition(pub u64);

impl LogPosition {
    /// The beginning of the log: every node has replayed at least this.
    pub const ZERO: LogPosition = LogPosition(0);

    /// How far `self` is behind `newer` (zero when it is not behind).
    pub fn lag_behind(self, newer: LogPosition) -> u64 {
        newer.0.saturating_sub(self.0)
    }
}

impl fmt::Display for LogPosition {
    /// PostgreSQL's `hi/lo` hex notation (`16/B374D848`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl std::str::FromStr for LogPosition {
    type Err = StoreError;

    /// Parses PostgreSQL's `hi/lo` hex notation.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::Corrupt(format!("not a log position: {s:?}"));
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return Err(bad());
        }
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(LogPosition((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// What one client has written and seen, for read-your-writes and
/// monotonic reads.
///
/// Invariant: `last_seen >= last_write` (a client has seen its own writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    last_write: LogPosition,
    last_seen: LogPosition,
}

impl Session {
    /// A session that has written and seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log position of this session's last write.
    pub fn last_write(&self) -> LogPosition {
        self.last_write
    }

    /// The newest log position this session has observed.
    pub fn last_seen(&self) -> LogPosition {
        self.last_seen
    }

    /// Records a write that committed at or before `at`.
    pub fn record_write(&mut self, at: LogPosition) {
        self.last_write = self.last_write.max(at);
        self.last_seen = self.last_seen.max(at);
    }

    /// Records a read that observed the log up to `at`.
    pub fn record_read(&mut self, at: LogPosition) {
        self.last_seen = self.last_seen.max(at);
    }
}

type HmacSha256 = Hmac<Sha256>;

const TOKEN_VERSION: &str = "k1";
/// `k1.` + 16 hex + `.` + 16 hex + `.` + 64 hex.
const TOKEN_LEN: usize = 3 + 16 + 1 + 16 + 1 + 64;

/// Signs and verifies session tokens with HMAC-SHA256.
///
/// ```
/// use kuai_store::{LogPosition, Session, TokenSigner};
/// let signer = TokenSigner::new(b"a server-side secret of 32+ bytes!!").unwrap();
/// let mut s = Session::new();
/// s.record_write(LogPosition(42));
/// let token = signer.encode(&s);
/// assert_eq!(signer.decode(&token).unwrap(), s);
/// // A tampered token is rejected, never trusted.
/// let forged = token.replacen("2a", "00", 1);
/// assert!(signer.decode(&forged).is_err());
/// ```
#[derive(Clone)]
pub struct TokenSigner {
    mac: HmacSha256,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer with `key`, which must be at least 16 bytes.
    pub fn new(key: &[u8]) -> Result<Self, StoreError> {
        if key.len() < 16 {
            return Err(StoreError::InvalidInput(
                "a token signing key needs at least 16 bytes".into(),
            ));
        }
        let mac = HmacSha256::new_from_slice(key)
            .map_err(|_| StoreError::InvalidInput("unusable signing key".into()))?;
        Ok(TokenSigner { mac })
    }

    fn tag(&self, body: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        mac
    }

    /// The signed token of `session`.
    pub fn encode(&self, session: &Session) -> String {
        let body = format!(
            "{TOKEN_VERSION}.{:016x}.{:016x}",
            session.last_write.0, session.last_seen.0
        );
        let tag = self.tag(&body).finalize().into_bytes();
        let mut out = String::with_capacity(TOKEN_LEN);
        out.push_str(&body);
        out.push('.');
        for b in tag {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Verifies and decodes a token. Anything malformed, unsigned, signed
    /// with another key or describing an impossible session is
    /// [`StoreError::BadToken`].
    pub fn decode(&self, token: &str) -> Result<Session, StoreError> {
        if token.len() != TOKEN_LEN {
            return Err(StoreError::BadToken("wrong length"));
        }
        if !token.is_ascii() {
            return Err(StoreError::BadToken("not ascii"));
        }
        let mut parts = token.split('.');
        let (Some(ver), Some(w), Some(s), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(StoreError::BadToken("wrong number of fields"));
        };
        if ver != TOKEN_VERSION {
            return Err(StoreError::BadToken("unknown version"));
        }
        let hex16 = |f: &str| -> Result<u64, StoreError> {
            if f.len() != 16 || !f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(StoreError::BadToken("bad position field"));
            }
            u64::from_str_radix(f, 16).map_err(|_| StoreError::BadToken("bad position field"))
        };
        let last_write = hex16(w)?;
        let last_seen = hex16(s)?;
        if tag.len() != 64 {
            return Err(StoreError::BadToken("bad signature field"));
        }
        let mut raw = [0u8; 32];
        for (i, chunk) in tag.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(chunk[0]).ok_or(StoreError::BadToken("bad signature field"))?;
            let lo = hex_val(chunk[1]).ok_or(StoreError::BadToken("bad signature field"))?;
            raw[i] = (hi << 4) | lo;
        }
        let body_len = TOKEN_LEN - 65;
        self.tag(&token[..body_len])
            .verify_slice(&raw)
            .map_err(|_| StoreError::BadToken("signature mismatch"))?;
        if last_seen < last_write {
            return Err(StoreError::BadToken("last_seen is older than last_write"));
        }
        Ok(Session {
            last_write: LogPosition(last_write),
            last_seen: LogPosition(last_seen),
        })
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"0123456789abcdef-test-key").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn positions_parse_and_print_like_postgres() {
        let p: LogPosition = "16/B374D848".parse().unwrap_or_default();
        assert_eq!(p, LogPosition((0x16 << 32) | 0xB374_D848));
        assert_eq!(p.to_string(), "16/B374D848");
        for bad in ["", "/", "1/", "/1", "x/1", "1/2/3", "123456789/0"] {
            assert!(bad.parse::<LogPosition>().is_err(), "{bad:?}");
        }
        assert_eq!(LogPosition(5).lag_behind(LogPosition(9)), 4);
        assert_eq!(LogPosition(9).lag_behind(LogPosition(5)), 0);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenSigner::new(b"short").is_err());
    }

    #[test]
    fn tokens_from_another_key_or_tampered_are_rejected() {
        let mut s = Session::new();
        s.record_write(LogPosition(1000));
        let token = signer().encode(&s);
        let other =
            TokenSigner::new(b"another key of enough length").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(other.decode(&token), Err(StoreError::BadToken(_))));
        // Claim "never wrote anything" by zeroing the write position.
        let forged = format!("k1.{:016x}.{:016x}{}", 0, 0, &token[36..]);
        assert!(signer().decode(&forged).is_err());
        assert!(signer().decode("").is_err());
        assert!(signer().decode(&token.to_uppercase()).is_err());
        assert!(signer().decode(&format!("{token}x")).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(w in any::<u64>(), extra in any::<u64>()) {
            let mut s = Session::new();
            s.record_write(LogPosition(w));
            s.record_read(LogPosition(w.saturating_add(extra)));
            let t = signer().encode(&s);
            prop_assert_eq!(signer().decode(&t).ok(), Some(s));
        }

        #[test]
        fn arbitrary_strings_never_panic_and_rarely_decode(t in ".{0,120}") {
            prop_assert!(signer().decode(&t).is_err());
        }

        #[test]
        fn single_char_flips_are_rejected(w in any::<u64>(), idx in 0usize..TOKEN_LEN, c in prop::char::range('0', 'z')) {
            let mut s = Session::new();
            s.record_write(LogPosition(w));
            let t = signer().encode(&s);
            let mut bytes: Vec<char> = t.chars().collect();
            prop_assume!(bytes[idx] != c);
            bytes[idx] = c;
            let flipped: String = bytes.into_iter().collect();
            prop_assert!(signer().decode(&flipped).is_err());
        }
    }
}
