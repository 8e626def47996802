//! The request side of RESP: an incremental, zero-copy parser of client
//! commands (multibulk `*N\r\n$L\r\n…` and inline `GET k\r\n`).
//!
//! The parser consumes complete arguments from a `BytesMut` read buffer as
//! they arrive, splitting each one off as a `Bytes` that shares the read
//! buffer's allocation (no copy). A half-received command keeps its parsed
//! arguments in the parser's state, so a large pipeline or a huge multibulk is
//! never re-scanned. Every length is checked against [`Limits`] before memory
//! is committed to it; malformed input is a [`ProtocolError`], never a panic.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

/// Bounds on what a client may send, after Redis's own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted (`proto-max-bulk-len`, 512 MiB by default).
    pub max_bulk_len: usize,
    /// Largest argument count of one multibulk command (1 Mi by default).
    pub max_multibulk_len: usize,
    /// Longest inline command or length line (64 KiB by default, like Redis's
    /// `PROTO_INLINE_MAX_SIZE`).
    pub max_inline_len: usize,
    /// Most bytes one pending command may hold, read buffer included
    /// (`client-query-buffer-limit`, 1 GiB by default).
    pub max_query_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_query_buffer: 1024 * 1024 * 1024,
        }
    }
}

/// Malformed client input. The connection answers
/// `-ERR Protocol error: …` and closes, like Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*N` with N not a number or above the multibulk limit.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$L` with L not a number, negative or above the bulk limit.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// A multibulk element that does not start with `$`.
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// An inline command longer than the inline limit without a newline.
    #[error("too big inline request")]
    TooBigInline,
    /// A `*N` line longer than the inline limit.
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$L` line longer than the inline limit.
    #[error("too big bulk count string")]
    TooBigBulkCount,
    /// An inline command with an unterminated quote.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// The pending command grew past the query buffer limit.
    #[error("query buffer limit exceeded")]
    QueryBufferLimit,
}

#[derive(Debug)]
enum State {
    Idle,
    Multi {
        /// Offset of the command's `*` in the caller's buffer.
        start: usize,
        remaining: usize,
        bulk_len: Option<usize>,
        pending_bytes: usize,
    },
}

/// What [`RequestParser::next_in`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A multibulk command whose arguments are the ranges written to `out`,
    /// offsets into the buffer given to `next_in`.
    Ranges,
    /// An inline command (its arguments are decoded, so they are owned).
    Inline(Vec<Bytes>),
}

/// An incremental parser of client commands.
///
/// ```
/// use bytes::BytesMut;
/// use kuai_server::resp::{Limits, RequestParser};
/// let mut parser = RequestParser::new(Limits::default());
/// let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n"[..]);
/// let mut args = Vec::new();
/// assert!(parser.next_command(&mut buf, &mut args).unwrap());
/// assert_eq!(args, vec![&b"GET"[..], &b"k"[..]]);
/// assert!(parser.next_command(&mut buf, &mut args).unwrap());
/// assert_eq!(args, vec![&b"PING"[..]]);
/// assert!(!parser.next_command(&mut buf, &mut args).unwrap());
/// ```
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    cursor: usize,
    ranges: Vec<Range<usize>>,
    scratch: Vec<Range<usize>>,
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    // Redis looks for '\r' and then expects '\n'; a bare '\r' followed by
    // something else is treated as part of the (then invalid) number.
    let mut from = 0;
    while let Some(p) = memchr(b'\r', &buf[from..]) {
        let at = from + p;
        if at + 1 >= buf.len() {
            return None;
        }
        if buf[at + 1] == b'\n' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Parses a strict decimal `i64` (Redis's `string2ll`): optional `-`, no `+`,
/// no spaces, no leading zeros except "0" itself.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i128).wrapping_neg() as i64)
        }
    } else {
        i64::try_from(v).ok()
    }
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Idle,
            cursor: 0,
            ranges: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether part of a command has been consumed and the rest is awaited.
    pub fn is_mid_command(&self) -> bool {
        matches!(self.state, State::Multi { .. })
    }

    /// Bytes still missing for the bulk string being received (a hint for
    /// how much to grow the read buffer), 0 if none is pending.
    pub fn wanted(&self, buf_len: usize) -> usize {
        match self.state {
            State::Multi {
                bulk_len: Some(len),
                ..
            } => (self.cursor + len + 2).saturating_sub(buf_len),
            _ => 0,
        }
    }

    /// Parses the next complete command of `buf`, continuing where the last
    /// call stopped, without copying or reference counting: a multibulk
    /// command's arguments are written to `out` as ranges of `buf`
    /// (returns [`Parsed::Ranges`]). `Ok(None)` means more bytes are needed.
    ///
    /// `buf` must be the same buffer (grown at the end) on every call, until
    /// [`finish_batch`](Self::finish_batch) says how many leading bytes the
    /// caller may drop.
    ///
    /// ```
    /// use kuai_server::resp::{Limits, Parsed, RequestParser};
    /// let mut p = RequestParser::new(Limits::default());
    /// let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI";
    /// let mut out = Vec::new();
    /// assert_eq!(p.next_in(buf, &mut out).unwrap(), Some(Parsed::Ranges));
    /// assert_eq!(&buf[out[0].clone()], b"GET");
    /// assert_eq!(p.next_in(buf, &mut out).unwrap(), None);
    /// assert_eq!(p.finish_batch(), 20); // the unfinished PING is kept
    /// ```
    pub fn next_in(
        &mut self,
        buf: &[u8],
        out: &mut Vec<Range<usize>>,
    ) -> Result<Option<Parsed>, ProtocolError> {
        loop {
            match self.state {
                State::Idle => {
                    let rest = &buf[self.cursor..];
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    if rest[0] == b'*' {
                        let Some(end) = find_crlf(rest) else {
                            if rest.len() > self.limits.max_inline_len {
                                return Err(ProtocolError::TooBigMultibulkCount);
                            }
                            return Ok(None);
                        };
                        if end > self.limits.max_inline_len {
                            return Err(ProtocolError::TooBigMultibulkCount);
                        }
                        let n = parse_i64(&rest[1..end])
                            .ok_or(ProtocolError::InvalidMultibulkLength)?;
                        if n > self.limits.max_multibulk_len as i64 {
                            return Err(ProtocolError::InvalidMultibulkLength);
                        }
                        let start = self.cursor;
                        self.cursor += end + 2;
                        if n <= 0 {
                            continue;
                        }
                        let n = n as usize;
                        self.ranges.clear();
                        self.ranges.reserve(n.min(1024));
                        self.state = State::Multi {
                            start,
                            remaining: n,
                            bulk_len: None,
                            pending_bytes: 0,
                        };
                    } else {
                        let Some(nl) = memchr(b'\n', rest) else {
                            if rest.len() > self.limits.max_inline_len {
                                return Err(ProtocolError::TooBigInline);
                            }
                            return Ok(None);
                        };
                        if nl > self.limits.max_inline_len {
                            return Err(ProtocolError::TooBigInline);
                        }
                        let line_end = if nl > 0 && rest[nl - 1] == b'\r' {
                            nl - 1
                        } else {
                            nl
                        };
                        let mut args = Vec::new();
                        let res = split_inline(&rest[..line_end], &mut args);
                        self.cursor += nl + 1;
                        res?;
                        if args.is_empty() {
                            continue;
                        }
                        return Ok(Some(Parsed::Inline(args)));
                    }
                }
                State::Multi {
                    ref mut remaining,
                    ref mut bulk_len,
                    ref mut pending_bytes,
                    ..
                } => {
                    while *remaining > 0 {
                        let rest = &buf[self.cursor..];
                        let len = match *bulk_len {
                            Some(len) => len,
                            None => {
                                if rest.is_empty() {
                                    return Ok(None);
                                }
                                if rest[0] != b'$' {
                                    return Err(ProtocolError::ExpectedBulk(rest[0] as char));
                                }
                                let Some(end) = find_crlf(rest) else {
                                    if rest.len() > self.limits.max_inline_len {
                                        return Err(ProtocolError::TooBigBulkCount);
                                    }
                                    return Ok(None);
                                };
                                if end > self.limits.max_inline_len {
                                    return Err(ProtocolError::TooBigBulkCount);
                                }
                                let l = parse_i64(&rest[1..end])
                                    .ok_or(ProtocolError::InvalidBulkLength)?;
                                if l < 0 || l as u64 > self.limits.max_bulk_len as u64 {
                                    return Err(ProtocolError::InvalidBulkLength);
                                }
                                let l = l as usize;
                                if pending_bytes.saturating_add(l) > self.limits.max_query_buffer {
                                    return Err(ProtocolError::QueryBufferLimit);
                                }
                                self.cursor += end + 2;
                                *bulk_len = Some(l);
                                l
                            }
                        };
                        if buf.len() - self.cursor < len + 2 {
                            return Ok(None);
                        }
                        // Like Redis, the two bytes after the bulk are skipped unchecked.
                        self.ranges.push(self.cursor..self.cursor + len);
                        self.cursor += len + 2;
                        *pending_bytes += len + 16;
                        *remaining -= 1;
                        *bulk_len = None;
                    }
                    self.state = State::Idle;
                    std::mem::swap(out, &mut self.ranges);
                    return Ok(Some(Parsed::Ranges));
                }
            }
        }
    }

    /// Ends a batch: returns how many leading bytes of the buffer are fully
    /// consumed (the caller drops them) and rebases the parser's offsets, so
    /// the next [`next_in`](Self::next_in) gets the remaining bytes at offset 0.
    pub fn finish_batch(&mut self) -> usize {
        let cut = match &mut self.state {
            State::Idle => {
                self.ranges.clear();
                self.cursor
            }
            State::Multi { start, .. } => {
                let cut = *start;
                *start = 0;
                for r in &mut self.ranges {
                    *r = r.start - cut..r.end - cut;
                }
                cut
            }
        };
        self.cursor -= cut;
        cut
    }

    /// Parses the next complete command out of `buf` into `out` (cleared
    /// first) as `Bytes` sharing `buf`'s memory. Returns `Ok(false)` when more
    /// bytes are needed; consumed bytes are removed from `buf` either way.
    pub fn next_command(
        &mut self,
        buf: &mut BytesMut,
        out: &mut Vec<Bytes>,
    ) -> Result<bool, ProtocolError> {
        let mut ranges = std::mem::take(&mut self.scratch);
        let r = self.next_in(buf, &mut ranges);
        let res = match r {
            Ok(Some(Parsed::Ranges)) => {
                let chunk = buf.split_to(self.cursor).freeze();
                self.cursor = 0;
                out.clear();
                out.extend(ranges.iter().map(|r| chunk.slice(r.clone())));
                Ok(true)
            }
            Ok(Some(Parsed::Inline(args))) => {
                buf.advance(self.cursor);
                self.cursor = 0;
                *out = args;
                Ok(true)
            }
            Ok(None) => {
                let cut = self.finish_batch();
                buf.advance(cut);
                let want = self.wanted(buf.len());
                if want > 0 {
                    // Grow towards the announced size as bytes arrive,
                    // never committing the whole claim up front.
                    buf.reserve(want.min(1 << 20));
                }
                Ok(false)
            }
            Err(e) => Err(e),
        };
        self.scratch = ranges;
        res
    }
}

/// C's `isspace`.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline command line like Redis's `sdssplitargs`: spaces separate
/// arguments, `"…"` supports `\n \r \t \b \a \\ \" \xHH`, `'…'` supports `\'`.
pub fn split_inline(line: &[u8], out: &mut Vec<Bytes>) -> Result<(), ProtocolError> {
    // Redis splits a C string: a NUL ends the line.
    let line = match memchr(0, line) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Ok(());
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && hex_val(line[i + 2]).is_some()
                    && hex_val(line[i + 3]).is_some()
                {
                    let hi = hex_val(line[i + 2]).unwrap_or(0);
                    let lo = hex_val(line[i + 3]).unwrap_or(0);
                    cur.push(hi * 16 + lo);
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(Bytes::from(cur));
    }
}

/// Encodes `args` as a RESP multibulk command (what clients send).
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], limits: Limits) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        let mut cmds = Vec::new();
        while p.next_command(&mut buf, &mut out)? {
            cmds.push(out.clone());
        }
        Ok(cmds)
    }

    #[test]
    fn multibulk_and_inline() {
        let cmds = parse_all(
            b"*1\r\n$4\r\nPING\r\nSET a \"b c\"\r\n\r\n*0\r\n",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[1], vec![&b"SET"[..], b"a", b"b c"]);
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut got = 0;
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            if p.next_command(&mut buf, &mut out).unwrap() {
                got += 1;
                assert_eq!(out[2], &b"hello"[..]);
            }
        }
        assert_eq!(got, 1);
    }

    #[test]
    fn errors() {
        let l = Limits::default();
        assert_eq!(
            parse_all(b"*abc\r\n", l),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n$-5\r\n", l),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n+x\r\n", l),
            Err(ProtocolError::ExpectedBulk('+'))
        );
        assert_eq!(
            parse_all(b"*1\r\n$99999999999\r\n", l),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_all(b"SET a \"b\r\n", l),
            Err(ProtocolError::UnbalancedQuotes)
        );
        let small = Limits {
            max_inline_len: 8,
            max_bulk_len: 4,
            ..Limits::default()
        };
        assert_eq!(
            parse_all(b"aaaaaaaaaaaaaaaa", small),
            Err(ProtocolError::TooBigInline)
        );
        assert_eq!(
            parse_all(b"*1\r\n$5\r\n", small),
            Err(ProtocolError::InvalidBulkLength)
        );
    }

    #[test]
    fn nul_and_vertical_space_in_inline() {
        let cmds = parse_all(b"a\x00b c\r\n\x0bx\x0cy\r\n", Limits::default()).unwrap();
        assert_eq!(
            cmds,
            vec![
                vec![Bytes::from_static(b"a")],
                vec![Bytes::from_static(b"x\x0cy")]
            ]
        );
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b" 1"), None);
    }
}
