//! The reply side of RESP: an encoder that appends RESP2 or RESP3 replies to
//! a write buffer, handing large values over as `Bytes` chunks (no copy).
//!
//! Small replies are formatted into one contiguous `BytesMut` (one `write`
//! per batch of pipelined replies); a bulk value of at least
//! [`ZERO_COPY_THRESHOLD`] bytes is not copied: the buffer is cut there and
//! the stored value's `Bytes` is chained after it, so the socket writes it
//! straight from the keyspace's memory.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bulk values at least this long are chained, not copied.
pub const ZERO_COPY_THRESHOLD: usize = 16 * 1024;

/// The protocol a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default.
    #[default]
    Resp2,
    /// RESP3 (maps, nulls, doubles, verbatim strings).
    Resp3,
}

/// An output buffer of encoded replies.
///
/// ```
/// use kuai_server::reply::{Protocol, ReplyBuf};
/// let mut r = ReplyBuf::new(Protocol::Resp2);
/// r.array_len(2);
/// r.bulk(b"a");
/// r.null();
/// r.integer(-3);
/// assert_eq!(r.to_vec(), b"*2\r\n$1\r\na\r\n$-1\r\n:-3\r\n");
/// ```
#[derive(Debug, Default)]
pub struct ReplyBuf {
    proto: Protocol,
    cur: BytesMut,
    chain: Vec<Bytes>,
    len: usize,
}

impl ReplyBuf {
    /// An empty buffer for `proto`.
    pub fn new(proto: Protocol) -> Self {
        ReplyBuf {
            proto,
            cur: BytesMut::with_capacity(16 * 1024),
            chain: Vec::new(),
            len: 0,
        }
    }

    /// The protocol replies are encoded in.
    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// Switches the protocol (after `HELLO`).
    pub fn set_protocol(&mut self, proto: Protocol) {
        self.proto = proto;
    }

    /// Bytes buffered so far.
    pub fn len(&self) -> usize {
        self.len + self.cur.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffered replies as a chain of `Bytes`, leaving the buffer empty.
    pub fn take_chain(&mut self) -> Vec<Bytes> {
        let mut chain = std::mem::take(&mut self.chain);
        if !self.cur.is_empty() {
            chain.push(self.cur.split().freeze());
        }
        self.len = 0;
        chain
    }

    /// Whether everything buffered is in the contiguous part (no chained
    /// values): then [`contiguous`](Self::contiguous) is the whole output.
    pub fn is_contiguous(&self) -> bool {
        self.chain.is_empty()
    }

    /// The contiguous part of the buffer.
    pub fn contiguous(&self) -> &[u8] {
        &self.cur
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.chain.clear();
        self.cur.clear();
        self.len = 0;
    }

    /// A copy of everything buffered (tests, AOF tools).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for c in &self.chain {
            v.extend_from_slice(c);
        }
        v.extend_from_slice(&self.cur);
        v
    }

    #[inline]
    fn line(&mut self, prefix: u8, body: &[u8]) {
        self.cur.reserve(body.len() + 3);
        self.cur.put_u8(prefix);
        self.cur.extend_from_slice(body);
        self.cur.extend_from_slice(b"\r\n");
    }

    #[inline]
    fn len_line(&mut self, prefix: u8, n: usize) {
        let mut b = itoa::Buffer::new();
        let s = b.format(n);
        self.line(prefix, s.as_bytes());
    }

    /// `+OK`.
    #[inline]
    pub fn ok(&mut self) {
        self.cur.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string (`+…`); must not contain CR or LF.
    pub fn simple(&mut self, s: &str) {
        self.line(b'+', s.as_bytes());
    }

    /// An error (`-…`), e.g. `"ERR syntax error"`; CR/LF become spaces.
    pub fn error(&mut self, s: &str) {
        if s.bytes().any(|b| b == b'\r' || b == b'\n') {
            let clean: String = s
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            self.line(b'-', clean.as_bytes());
        } else {
            self.line(b'-', s.as_bytes());
        }
    }

    /// An integer (`:n`).
    #[inline]
    pub fn integer(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(n);
        self.line(b':', s.as_bytes());
    }

    /// A bulk string, copied.
    #[inline]
    pub fn bulk(&mut self, v: &[u8]) {
        self.len_line(b'$', v.len());
        self.cur.extend_from_slice(v);
        self.cur.extend_from_slice(b"\r\n");
    }

    /// A bulk string from shared bytes: large values are chained, not copied.
    #[inline]
    pub fn bulk_bytes(&mut self, v: &Bytes) {
        if v.len() < ZERO_COPY_THRESHOLD {
            return self.bulk(v);
        }
        self.len_line(b'$', v.len());
        let head = self.cur.split().freeze();
        self.len += head.len() + v.len();
        self.chain.push(head);
        self.chain.push(v.clone());
        self.cur.extend_from_slice(b"\r\n");
    }

    /// A null (`$-1` in RESP2, `_` in RESP3).
    #[inline]
    pub fn null(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.cur.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.cur.extend_from_slice(b"_\r\n"),
        }
    }

    /// A null array (`*-1` in RESP2, `_` in RESP3).
    pub fn null_array(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.cur.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.cur.extend_from_slice(b"_\r\n"),
        }
    }

    /// An array header; `n` elements must follow.
    #[inline]
    pub fn array_len(&mut self, n: usize) {
        self.len_line(b'*', n);
    }

    /// A map header (`%n` in RESP3, `*2n` in RESP2); `n` pairs must follow.
    pub fn map_len(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.len_line(b'*', n * 2),
            Protocol::Resp3 => self.len_line(b'%', n),
        }
    }

    /// A set header (`~n` in RESP3, `*n` in RESP2).
    pub fn set_len(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.len_line(b'*', n),
            Protocol::Resp3 => self.len_line(b'~', n),
        }
    }

    /// A verbatim text string (`=n\r\ntxt:…` in RESP3, bulk in RESP2).
    pub fn verbatim(&mut self, text: &[u8]) {
        match self.proto {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.len_line(b'=', text.len() + 4);
                self.cur.extend_from_slice(b"txt:");
                self.cur.extend_from_slice(text);
                self.cur.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Raw, already encoded bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.cur.extend_from_slice(bytes);
    }
}

/// The socket side: the buffered replies in order (chained values, then the
/// contiguous tail), so a reactor can write them with one `writev` and
/// [`advance`](Buf::advance) past what went out.
impl Buf for ReplyBuf {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        if self.chain.is_empty() {
            return &self.cur;
        }
        match self.chain.iter().find(|c| !c.is_empty()) {
            Some(c) => c,
            None => &self.cur,
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let parts = self
            .chain
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.cur[..]))
            .filter(|c| !c.is_empty());
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(parts) {
            *slot = std::io::IoSlice::new(part);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        if self.chain.is_empty() {
            // The common case: everything was contiguous and went out in
            // one write; `clear` keeps the allocation for the next batch.
            if cnt == self.cur.len() {
                self.cur.clear();
            } else {
                self.cur.advance(cnt);
            }
            return;
        }
        let mut done = 0;
        for c in &mut self.chain {
            if cnt == 0 {
                break;
            }
            let k = cnt.min(c.len());
            c.advance(k);
            self.len -= k;
            cnt -= k;
            if c.is_empty() {
                done += 1;
            }
        }
        self.chain.drain(..done);
        if cnt > 0 {
            assert!(cnt <= self.cur.len(), "advance past the end of a ReplyBuf");
            self.cur.advance(cnt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp3_shapes() {
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.map_len(1);
        r.simple("proto");
        r.integer(3);
        r.null();
        r.verbatim(b"x");
        assert_eq!(r.to_vec(), b"%1\r\n+proto\r\n:3\r\n_\r\n=5\r\ntxt:x\r\n");
    }

    #[test]
    fn large_values_are_chained() {
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.ok();
        let big = Bytes::from(vec![b'x'; ZERO_COPY_THRESHOLD]);
        r.bulk_bytes(&big);
        r.ok();
        assert!(!r.is_contiguous());
        let total = r.len();
        let chain = r.take_chain();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[1].as_ptr(), big.as_ptr());
        assert_eq!(chain.iter().map(Bytes::len).sum::<usize>(), total);
        assert!(r.is_empty());
    }

    #[test]
    fn as_a_buf_it_yields_every_byte_in_order_across_partial_advances() {
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.ok();
        let big = Bytes::from(vec![b'x'; ZERO_COPY_THRESHOLD]);
        r.bulk_bytes(&big);
        r.integer(7);
        let want = r.to_vec();
        let mut iov = [std::io::IoSlice::new(&[]); 8];
        assert_eq!(r.chunks_vectored(&mut iov), 3);
        let mut got = Vec::new();
        // Odd-sized steps cross every chunk boundary.
        while r.has_remaining() {
            let step = r.chunk().len().min(4093);
            got.extend_from_slice(&r.chunk()[..step]);
            r.advance(step);
            assert_eq!(r.remaining(), want.len() - got.len());
        }
        assert_eq!(got, want);
        assert!(r.is_empty() && r.is_contiguous());
        // Reusable afterwards.
        r.ok();
        assert_eq!(r.to_vec(), b"+OK\r\n");
    }
}
