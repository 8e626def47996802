//! A complete RESP2/RESP3 value decoder, for the client side: tests, the
//! side-by-side comparison with `redis-server`, and the fuzz target.
//!
//! It decodes any reply the server can send (simple strings, errors,
//! integers, bulk strings, arrays, nulls, doubles, booleans, maps, sets,
//! verbatim strings, big numbers, pushes), with nesting depth and lengths
//! bounded by [`crate::resp::Limits`].

use crate::resp::{Limits, parse_i64};

/// One RESP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+…`
    Simple(Vec<u8>),
    /// `-…`
    Error(Vec<u8>),
    /// `:n`
    Integer(i64),
    /// `$n` (`None` for `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*n` (`None` for `*-1`)
    Array(Option<Vec<Frame>>),
    /// `_`
    Null,
    /// `,x` (kept as text, so it round-trips exactly)
    Double(Vec<u8>),
    /// `#t` / `#f`
    Boolean(bool),
    /// `%n`
    Map(Vec<(Frame, Frame)>),
    /// `~n`
    Set(Vec<Frame>),
    /// `=n` (format and text, e.g. `txt:…`)
    Verbatim(Vec<u8>),
    /// `(n`
    BigNumber(Vec<u8>),
    /// `>n`
    Push(Vec<Frame>),
}

/// A malformed reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed RESP frame: {0}")]
pub struct FrameError(pub &'static str);

const MAX_DEPTH: usize = 64;

/// Decodes one frame from the start of `buf`: `Ok(Some((frame, consumed)))`,
/// `Ok(None)` if incomplete.
///
/// ```
/// use kuai_server::frame::{decode, Frame};
/// use kuai_server::resp::Limits;
/// let (f, n) = decode(b"*2\r\n:1\r\n$-1\r\n", &Limits::default()).unwrap().unwrap();
/// assert_eq!(n, 13);
/// assert_eq!(f, Frame::Array(Some(vec![Frame::Integer(1), Frame::Bulk(None)])));
/// ```
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut pos = 0;
    match decode_at(buf, &mut pos, limits, 0)? {
        Some(f) => Ok(Some((f, pos))),
        None => Ok(None),
    }
}

fn line<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    limits: &Limits,
) -> Result<Option<&'a [u8]>, FrameError> {
    let rest = &buf[*pos..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            *pos += end + 2;
            Ok(Some(&rest[..end]))
        }
        None if rest.len() > limits.max_inline_len => Err(FrameError("line too long")),
        None => Ok(None),
    }
}

fn count(s: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let n = parse_i64(s).ok_or(FrameError("bad length"))?;
    if n == -1 {
        return Ok(None);
    }
    if n < 0 || n as u64 > max as u64 {
        return Err(FrameError("length out of range"));
    }
    Ok(Some(n as usize))
}

fn decode_at(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<Frame>, FrameError> {
    if depth > MAX_DEPTH {
        return Err(FrameError("nested too deep"));
    }
    if *pos >= buf.len() {
        return Ok(None);
    }
    let tag = buf[*pos];
    *pos += 1;
    let Some(l) = line(buf, pos, limits)? else {
        return Ok(None);
    };
    macro_rules! elems {
        ($n:expr) => {{
            let n = $n;
            let mut v = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                match decode_at(buf, pos, limits, depth + 1)? {
                    Some(f) => v.push(f),
                    None => return Ok(None),
                }
            }
            v
        }};
    }
    macro_rules! blob {
        ($n:expr) => {{
            let n = $n;
            if buf.len() < *pos + n + 2 {
                return Ok(None);
            }
            if &buf[*pos + n..*pos + n + 2] != b"\r\n" {
                return Err(FrameError("missing CRLF after blob"));
            }
            let v = buf[*pos..*pos + n].to_vec();
            *pos += n + 2;
            v
        }};
    }
    Ok(Some(match tag {
        b'+' => Frame::Simple(l.to_vec()),
        b'-' => Frame::Error(l.to_vec()),
        b':' => Frame::Integer(parse_i64(l).ok_or(FrameError("bad integer"))?),
        b',' => Frame::Double(l.to_vec()),
        b'(' => Frame::BigNumber(l.to_vec()),
        b'_' => {
            if !l.is_empty() {
                return Err(FrameError("bad null"));
            }
            Frame::Null
        }
        b'#' => match l {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(FrameError("bad boolean")),
        },
        b'$' => match count(l, limits.max_bulk_len)? {
            None => Frame::Bulk(None),
            Some(n) => Frame::Bulk(Some(blob!(n))),
        },
        b'=' => match count(l, limits.max_bulk_len)? {
            None => return Err(FrameError("null verbatim")),
            Some(n) => Frame::Verbatim(blob!(n)),
        },
        b'*' => match count(l, limits.max_multibulk_len)? {
            None => Frame::Array(None),
            Some(n) => Frame::Array(Some(elems!(n))),
        },
        b'~' | b'>' => match count(l, limits.max_multibulk_len)? {
            None => return Err(FrameError("null aggregate")),
            Some(n) => {
                let v = elems!(n);
                if tag == b'~' {
                    Frame::Set(v)
                } else {
                    Frame::Push(v)
                }
            }
        },
        b'%' => match count(l, limits.max_multibulk_len / 2)? {
            None => return Err(FrameError("null map")),
            Some(n) => {
                let flat = elems!(n * 2);
                let mut it = flat.into_iter();
                let mut pairs = Vec::with_capacity(n);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Frame::Map(pairs)
            }
        },
        _ => return Err(FrameError("unknown type byte")),
    }))
}

/// Encodes a frame (the inverse of [`decode`]).
pub fn encode(f: &Frame, out: &mut Vec<u8>) {
    fn hdr(out: &mut Vec<u8>, tag: u8, n: usize) {
        out.push(tag);
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    fn ln(out: &mut Vec<u8>, tag: u8, s: &[u8]) {
        out.push(tag);
        out.extend_from_slice(s);
        out.extend_from_slice(b"\r\n");
    }
    match f {
        Frame::Simple(s) => ln(out, b'+', s),
        Frame::Error(s) => ln(out, b'-', s),
        Frame::Integer(n) => ln(out, b':', itoa::Buffer::new().format(*n).as_bytes()),
        Frame::Double(s) => ln(out, b',', s),
        Frame::BigNumber(s) => ln(out, b'(', s),
        Frame::Null => out.extend_from_slice(b"_\r\n"),
        Frame::Boolean(b) => ln(out, b'#', if *b { b"t" } else { b"f" }),
        Frame::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Frame::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Frame::Bulk(Some(v)) | Frame::Verbatim(v) => {
            hdr(
                out,
                if matches!(f, Frame::Bulk(_)) {
                    b'$'
                } else {
                    b'='
                },
                v.len(),
            );
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Array(Some(v)) | Frame::Set(v) | Frame::Push(v) => {
            let tag = match f {
                Frame::Array(_) => b'*',
                Frame::Set(_) => b'~',
                _ => b'>',
            };
            hdr(out, tag, v.len());
            for e in v {
                encode(e, out);
            }
        }
        Frame::Map(pairs) => {
            hdr(out, b'%', pairs.len());
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
        }
    }
}
