//! Transfers: which path carried the bytes (counters), detected fallbacks,
//! relay, tee and vectored writes.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use bytes::Bytes;
use common::{TempDir, drain, pattern, tcp_pair, write_file};
use kuai_zerocopy::transfer::{self, Method, Transfer};
use kuai_zerocopy::{Counters, MappedFile, open_regular};
use proptest::prelude::*;

const LEN: usize = 3 * 1024 * 1024 + 123;

#[test]
fn file_to_tcp_socket_by_each_method() {
    let dir = TempDir::new("tr-methods");
    let (path, data) = write_file(&dir, "f", LEN);
    let file = open_regular(&path).unwrap();
    for method in [Method::Auto, Method::Sendfile, Method::Splice, Method::Copy] {
        let counters = Counters::new();
        let t = Transfer::new().method(method).counters(counters.clone());
        let (server, client) = tcp_pair();
        let reader = drain(client);
        let p = t.file_to_socket(&file, 0, LEN as u64, &server).unwrap();
        drop(server);
        assert_eq!(reader.join().unwrap(), data, "{method:?}");
        assert_eq!(p.total(), LEN as u64);
        assert_eq!(counters.snapshot(), p);
        assert_eq!(counters.fallbacks(), 0);
        match method {
            // Copy loop; Auto to a loopback peer above 2 MiB: mmap + write.
            Method::Copy | Method::Auto => assert_eq!(p.copied, LEN as u64, "{method:?}"),
            _ => assert!(
                p.all_zero_copy(),
                "{method:?} took the zero-copy path: {p:?}"
            ),
        }
    }
    // Auto with the local mmap path disabled: sendfile.
    let (server, client) = tcp_pair();
    let reader = drain(client);
    let p = Transfer::new()
        .local_mmap_threshold(u64::MAX)
        .file_to_socket(&file, 0, LEN as u64, &server)
        .unwrap();
    drop(server);
    assert_eq!(reader.join().unwrap(), data);
    assert!(p.all_zero_copy(), "{p:?}");
}

#[test]
fn auto_uses_mmap_for_large_local_transfers_and_sendfile_otherwise() {
    let dir = TempDir::new("tr-auto");
    let (path, data) = write_file(&dir, "f", 1_000_000);
    let file = open_regular(&path).unwrap();
    let auto = Transfer::new().local_mmap_threshold(500_000);
    // Loopback TCP, above the threshold: mmap + write.
    let (server, client) = tcp_pair();
    let reader = drain(client);
    let p = auto.file_to_socket(&file, 10, 999_990, &server).unwrap();
    drop(server);
    assert_eq!(reader.join().unwrap(), &data[10..]);
    assert_eq!(p.copied, 999_990);
    // A Unix socket is local too; below the threshold: sendfile.
    let (tx, rx) = UnixStream::pair().unwrap();
    let reader = drain(rx);
    let big = auto.file_to_socket(&file, 0, 1_000_000, &tx).unwrap();
    let small = auto.file_to_socket(&file, 0, 400_000, &tx).unwrap();
    drop(tx);
    assert_eq!(reader.join().unwrap().len(), 1_400_000);
    assert_eq!(big.copied, 1_000_000);
    assert!(small.all_zero_copy());
    // A range past the end is reported precisely (by the sendfile path).
    let (tx, _rx) = UnixStream::pair().unwrap();
    let err = auto
        .file_to_socket(&file, 900_000, 600_000, &tx)
        .unwrap_err();
    assert!(
        matches!(err, kuai_zerocopy::ZeroCopyError::UnexpectedEof { .. }),
        "{err:?}"
    );
    // A file under an exclusive lock (a truncation under way) is not
    // mapped: sendfile serves it.
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let (tx, rx) = UnixStream::pair().unwrap();
    let reader = drain(rx);
    let p = auto.file_to_socket(&file, 0, 1_000_000, &tx).unwrap();
    drop(tx);
    assert_eq!(reader.join().unwrap(), data);
    assert!(p.all_zero_copy(), "{p:?}");
}

#[test]
fn offset_and_length_are_honoured_and_the_file_position_untouched() {
    let dir = TempDir::new("tr-offset");
    let (path, data) = write_file(&dir, "f", 100_000);
    let mut file = open_regular(&path).unwrap();
    for method in [Method::Sendfile, Method::Splice, Method::Copy] {
        let (tx, rx) = UnixStream::pair().unwrap();
        let reader = drain(rx);
        Transfer::new()
            .method(method)
            .file_to_socket(&file, 1000, 5000, &tx)
            .unwrap();
        drop(tx);
        assert_eq!(reader.join().unwrap(), &data[1000..6000]);
    }
    let mut first = [0u8; 4];
    file.read_exact(&mut first).unwrap();
    assert_eq!(first, data[..4]);
}

#[test]
fn sendfile_and_splice_refusal_is_detected_and_copied_instead() {
    // sendfile and splice refuse an O_APPEND destination with EINVAL.
    let dir = TempDir::new("tr-fallback");
    let (path, data) = write_file(&dir, "f", 200_000);
    let file = open_regular(&path).unwrap();
    for method in [Method::Auto, Method::Sendfile, Method::Splice] {
        let out_path = dir.join(&format!("out-{method:?}"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .unwrap();
        let counters = Counters::new();
        let p = Transfer::new()
            .method(method)
            .counters(counters.clone())
            .file_to_socket(&file, 0, 200_000, &out)
            .unwrap();
        assert_eq!(p.copied, 200_000, "{method:?}: {p:?}");
        assert_eq!(p.zero_copy, 0);
        assert_eq!(counters.fallbacks(), 1);
        assert_eq!(std::fs::read(&out_path).unwrap(), data);
    }
}

#[test]
fn convenience_functions_send_whole_files() {
    let dir = TempDir::new("tr-conv");
    let (path, data) = write_file(&dir, "f", 70_000);
    let (tx, rx) = UnixStream::pair().unwrap();
    let reader = drain(rx);
    let p1 = transfer::send_path(&path, &tx).unwrap();
    let p2 = transfer::file_to_socket(&open_regular(&path).unwrap(), &tx).unwrap();
    let mapped = MappedFile::open(&path).unwrap();
    let p3 = Transfer::new().mapped_to_socket(&mapped, &tx).unwrap();
    drop(tx);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), 210_000);
    assert!(got.chunks(70_000).all(|c| c == &data[..]));
    assert!(p1.all_zero_copy() && p2.all_zero_copy());
    assert_eq!(p3.copied, 70_000);
}

#[test]
fn relay_splices_socket_to_socket() {
    let data = pattern(2 * 1024 * 1024 + 7);
    let (mut src_w, src_r) = tcp_pair();
    let (dst_w, dst_r) = tcp_pair();
    let reader = drain(dst_r);
    let payload = data.clone();
    let writer = std::thread::spawn(move || {
        src_w.write_all(&payload).unwrap();
    });
    let counters = Counters::new();
    let p = Transfer::new()
        .counters(counters.clone())
        .relay(&src_r, &dst_w, None)
        .unwrap();
    writer.join().unwrap();
    drop(dst_w);
    assert_eq!(reader.join().unwrap(), data);
    assert_eq!(p.zero_copy, data.len() as u64);
    assert!(p.all_zero_copy());
    assert_eq!(counters.zero_copy(), data.len() as u64);
}

#[test]
fn relay_respects_limit_and_falls_back_for_an_append_only_sink() {
    let dir = TempDir::new("tr-relay-file");
    let data = pattern(500_000);
    let (mut w, r) = UnixStream::pair().unwrap();
    let payload = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&payload).unwrap();
    });
    let out_path = dir.join("out");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .unwrap();
    let counters = Counters::new();
    let p = Transfer::new()
        .counters(counters.clone())
        .relay(&r, &out, Some(300_000))
        .unwrap();
    assert_eq!(p.total(), 300_000);
    // Splicing into the pipe worked, out of it into O_APPEND did not.
    assert_eq!(p.copied, 300_000);
    assert_eq!(std::fs::read(&out_path).unwrap(), &data[..300_000]);
    // Drain the rest so the writer finishes.
    let mut rest = vec![0u8; 200_000];
    let mut r = r;
    r.read_exact(&mut rest).unwrap();
    assert_eq!(rest, &data[300_000..]);
    writer.join().unwrap();
}

#[test]
fn relay_into_a_regular_file_is_zero_copy() {
    let dir = TempDir::new("tr-relay-file2");
    let data = pattern(400_000);
    let (mut w, r) = UnixStream::pair().unwrap();
    let payload = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&payload).unwrap();
    });
    let out_path = dir.join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let p = transfer::relay(&r, &out).unwrap_or_else(|e| panic!("{e}"));
    writer.join().unwrap();
    assert_eq!(p.zero_copy, 400_000);
    assert_eq!(std::fs::read(&out_path).unwrap(), data);
}

#[test]
fn tee_duplicates_a_stream_into_two_sinks() {
    let dir = TempDir::new("tr-tee");
    let data = pattern(3 * 1024 * 1024 + 5);
    let (mut w, r) = UnixStream::pair().unwrap();
    let payload = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&payload).unwrap();
    });
    let (a_w, a_r) = tcp_pair();
    let reader = drain(a_r);
    let out_path = dir.join("copy");
    let out = std::fs::File::create(&out_path).unwrap();
    let counters = Counters::new();
    let p = Transfer::new()
        .counters(counters.clone())
        .tee(&r, &a_w, &out, None)
        .unwrap();
    writer.join().unwrap();
    drop(a_w);
    assert_eq!(reader.join().unwrap(), data);
    assert_eq!(std::fs::read(&out_path).unwrap(), data);
    assert_eq!(p.zero_copy, data.len() as u64);
    assert!(p.all_zero_copy());
}

#[test]
fn tee_falls_back_per_sink() {
    let dir = TempDir::new("tr-tee-fb");
    let data = pattern(256 * 1024);
    let (mut w, r) = UnixStream::pair().unwrap();
    let payload = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&payload).unwrap();
    });
    let (a_w, a_r) = UnixStream::pair().unwrap();
    let reader = drain(a_r);
    let out_path = dir.join("appendonly");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .unwrap();
    let p = transfer::tee(&r, &a_w, &out).unwrap();
    writer.join().unwrap();
    drop(a_w);
    assert_eq!(reader.join().unwrap(), data);
    assert_eq!(std::fs::read(&out_path).unwrap(), data);
    assert_eq!(p.total(), data.len() as u64);
}

#[test]
fn vectored_chain_longer_than_iov_max() {
    let chain: Vec<Bytes> = (0..3000)
        .map(|i| {
            if i % 7 == 0 {
                Bytes::new()
            } else {
                Bytes::from(pattern(1 + i % 900))
            }
        })
        .collect();
    let expected: Vec<u8> = chain.iter().flat_map(|b| b.iter().copied()).collect();
    let (server, client) = tcp_pair();
    let reader = drain(client);
    let p = transfer::write_all_bytes(&server, &chain).unwrap();
    drop(server);
    assert_eq!(reader.join().unwrap(), expected);
    assert_eq!(p.copied, expected.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Any chain of Bytes arrives as exactly its concatenation, to a socket
    /// or to a file.
    #[test]
    fn vectored_writes_deliver_the_concatenation(
        parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..5000), 0..60)
    ) {
        let chain: Vec<Bytes> = parts.iter().cloned().map(Bytes::from).collect();
        let expected: Vec<u8> = parts.concat();
        let (tx, rx) = UnixStream::pair().unwrap();
        let reader = drain(rx);
        let p = transfer::write_all_bytes(&tx, &chain).unwrap();
        drop(tx);
        prop_assert_eq!(reader.join().unwrap(), expected.clone());
        prop_assert_eq!(p.total(), expected.len() as u64);

        let dir = TempDir::new("tr-prop");
        let path = dir.join("f");
        let f = std::fs::File::create(&path).unwrap();
        transfer::write_all_bytes(&f, &chain).unwrap();
        prop_assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
