//! Fuzzes kuai-server's RESP request parser (fed in two arbitrary pieces,
//! with small limits) and its reply-frame decoder: no panic, no unbounded
//! allocation, every argument within the limits.
#![no_main]

use bytes::{Buf, BytesMut};
use kuai_server::frame::decode;
use kuai_server::resp::{Limits, Parsed, RequestParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bulk_len: 4096,
        max_multibulk_len: 64,
        max_inline_len: 1024,
        max_query_buffer: 64 * 1024,
    };
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    'outer: for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match parser.next_command(&mut buf, &mut args) {
                Ok(true) => {
                    assert!(!args.is_empty());
                    assert!(args.len() <= limits.max_multibulk_len.max(1024));
                    for a in &args {
                        assert!(a.len() <= limits.max_bulk_len.max(limits.max_inline_len));
                    }
                }
                Ok(false) => break,
                Err(_) => break 'outer,
            }
        }
    }
    // The server's path: ranges into a growing buffer, dropped per batch.
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut ranges = Vec::new();
    'batches: for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match parser.next_in(&buf, &mut ranges) {
                Ok(Some(Parsed::Ranges)) => {
                    for r in &ranges {
                        assert!(r.end <= buf.len() && r.len() <= limits.max_bulk_len);
                    }
                }
                Ok(Some(Parsed::Inline(a))) => assert!(!a.is_empty()),
                Ok(None) => break,
                Err(_) => break 'batches,
            }
        }
        let cut = parser.finish_batch();
        buf.advance(cut);
    }
    let _ = decode(data, &limits);
});
