//! Property tests of the RESP parser and encoders.

use bytes::Buf;
use bytes::{Bytes, BytesMut};
use kuai_server::frame::{Frame, decode, encode};
use kuai_server::resp::{Limits, Parsed, RequestParser, encode_command};
use proptest::prelude::*;

fn parse_chunked(input: &[u8], cuts: &[usize], limits: Limits) -> Result<Vec<Vec<Bytes>>, ()> {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut cmds = Vec::new();
    let mut pos = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    for p in points {
        buf.extend_from_slice(&input[pos..p.max(pos)]);
        pos = p.max(pos);
        loop {
            match parser.next_command(&mut buf, &mut out) {
                Ok(true) => cmds.push(out.clone()),
                Ok(false) => break,
                Err(_) => return Err(()),
            }
        }
    }
    Ok(cmds)
}

/// The server's way: ranges into a growing buffer, dropped per batch.
fn parse_batches(input: &[u8], cuts: &[usize]) -> Vec<Vec<Vec<u8>>> {
    let mut parser = RequestParser::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut ranges = Vec::new();
    let mut cmds = Vec::new();
    let mut pos = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    for p in points {
        buf.extend_from_slice(&input[pos..p.max(pos)]);
        pos = p.max(pos);
        loop {
            match parser.next_in(&buf, &mut ranges).expect("valid input") {
                Some(Parsed::Ranges) => {
                    cmds.push(ranges.iter().map(|r| buf[r.clone()].to_vec()).collect())
                }
                Some(Parsed::Inline(a)) => cmds.push(a.iter().map(|x| x.to_vec()).collect()),
                None => break,
            }
        }
        let cut = parser.finish_batch();
        buf.advance(cut);
    }
    cmds
}

fn frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,12}".prop_map(|s| Frame::Simple(s.into_bytes())),
        "[a-zA-Z0-9 ]{0,12}".prop_map(|s| Frame::Error(s.into_bytes())),
        any::<i64>().prop_map(Frame::Integer),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)).prop_map(Frame::Bulk),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        Just(Frame::Array(None)),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| Frame::Array(Some(v))),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any commands, encoded and delivered in arbitrary pieces, parse back
    /// to exactly the same arguments.
    #[test]
    fn commands_round_trip_in_any_chunking(
        cmds in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut wire = Vec::new();
        for c in &cmds {
            let args: Vec<&[u8]> = c.iter().map(|a| &a[..]).collect();
            encode_command(&args, &mut wire);
        }
        let parsed = parse_chunked(&wire, &cuts, Limits::default()).expect("valid input");
        let want: Vec<Vec<Bytes>> = cmds.iter().map(|c| c.iter().map(|a| Bytes::copy_from_slice(a)).collect()).collect();
        prop_assert_eq!(parsed, want);
        prop_assert_eq!(parse_batches(&wire, &cuts), cmds);
    }

    /// Random bytes never panic, and every parsed argument respects the limits.
    #[test]
    fn garbage_is_an_error_or_bounded_commands(
        input in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let limits = Limits { max_bulk_len: 64, max_multibulk_len: 8, max_inline_len: 128, max_query_buffer: 1024 };
        if let Ok(cmds) = parse_chunked(&input, &cuts, limits) {
            for c in cmds {
                prop_assert!(!c.is_empty());
                for a in c {
                    prop_assert!(a.len() <= 128);
                }
            }
        }
    }

    /// Random bytes with RESP-looking prefixes never panic the parser.
    #[test]
    fn resp_shaped_garbage(
        parts in proptest::collection::vec(prop_oneof![
            Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()), Just(b"-1".to_vec()),
            Just(b"3".to_vec()), Just(b"99999999999999999999".to_vec()), Just(b"\"".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4)], 0..40),
    ) {
        let input: Vec<u8> = parts.concat();
        let _ = parse_chunked(&input, &[], Limits::default());
        let _ = decode(&input, &Limits::default());
    }

    /// Reply frames round-trip through encode/decode.
    #[test]
    fn frames_round_trip(f in frame()) {
        let mut wire = Vec::new();
        encode(&f, &mut wire);
        let (back, n) = decode(&wire, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(n, wire.len());
        prop_assert_eq!(back, f);
        // Every strict prefix is incomplete, never an error.
        for cut in 0..wire.len() {
            prop_assert_eq!(decode(&wire[..cut], &Limits::default()).unwrap(), None);
        }
    }
}
