//! Bad input and faults: typed errors, partial progress, no panic, no hang.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use bytes::Bytes;
use common::{TempDir, pattern, tcp_pair, write_file};
use kuai_core::ErrorKind;
use kuai_zerocopy::transfer::{self, Method, Transfer};
use kuai_zerocopy::{Counters, ZeroCopyError, open_regular};

const BIG: usize = 32 * 1024 * 1024;
const READ_BEFORE_CLOSE: usize = 256 * 1024;

/// A client that reads a little, then closes with unread data pending
/// (which makes the kernel reset the connection).
fn rude_client(mut c: std::net::TcpStream) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; READ_BEFORE_CLOSE];
        c.read_exact(&mut buf).unwrap();
    })
}

fn assert_peer_closed(err: &ZeroCopyError, len: u64) {
    match err {
        ZeroCopyError::PeerClosed { progress, .. } => {
            assert!(progress.total() >= READ_BEFORE_CLOSE as u64, "{progress:?}");
            assert!(progress.total() < len, "{progress:?}");
        }
        other => panic!("expected PeerClosed, got {other:?}"),
    }
}

#[test]
fn peer_closing_mid_transfer_is_a_typed_error_with_progress() {
    let dir = TempDir::new("fault-peer");
    let (path, _) = write_file(&dir, "big", BIG);
    let file = open_regular(&path).unwrap();
    for method in [Method::Auto, Method::Sendfile, Method::Splice, Method::Copy] {
        let (server, client) = tcp_pair();
        let counters = Counters::new();
        let t = Transfer::new().method(method).counters(counters.clone());
        let rude = rude_client(client);
        let err = t.file_to_socket(&file, 0, BIG as u64, &server).unwrap_err();
        rude.join().unwrap();
        assert_peer_closed(&err, BIG as u64);
        // Partial progress is counted too.
        assert_eq!(counters.snapshot(), err.progress());
        assert_eq!(kuai_core::Error::from(err).kind(), ErrorKind::Closed);
    }
}

#[test]
fn peer_closing_during_vectored_write_and_relay() {
    let (server, client) = tcp_pair();
    let rude = rude_client(client);
    let chain = [Bytes::from_static(b"HDR"), Bytes::from(pattern(BIG))];
    let err = transfer::write_all_bytes(&server, &chain).unwrap_err();
    rude.join().unwrap();
    assert_peer_closed(&err, BIG as u64 + 3);

    // relay: the destination's peer goes away.
    let (mut src_w, src_r) = UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![5u8; 1 << 20];
        for _ in 0..32 {
            if src_w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let (dst_w, dst_r) = tcp_pair();
    let rude = rude_client(dst_r);
    let err = transfer::relay(&src_r, &dst_w).unwrap_err();
    rude.join().unwrap();
    assert_peer_closed(&err, BIG as u64);
    drop(src_r);
    writer.join().unwrap();
}

#[test]
fn a_file_shorter_than_asked_is_unexpected_eof() {
    let dir = TempDir::new("fault-eof");
    let (path, data) = write_file(&dir, "f", 10_000);
    let file = open_regular(&path).unwrap();
    for method in [Method::Sendfile, Method::Splice, Method::Copy] {
        let (mut rx, tx) = UnixStream::pair().unwrap();
        let err = Transfer::new()
            .method(method)
            .file_to_socket(&file, 0, 20_000, &tx)
            .unwrap_err();
        match err {
            ZeroCopyError::UnexpectedEof { progress, expected } => {
                assert_eq!(progress.total(), 10_000);
                assert_eq!(expected, 20_000);
            }
            other => panic!("{method:?}: {other:?}"),
        }
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
    }
}

#[test]
fn bad_paths_are_typed_errors() {
    let dir = TempDir::new("fault-path");
    let (tx, _rx) = UnixStream::pair().unwrap();
    let err = transfer::send_path(dir.join("missing"), &tx).unwrap_err();
    assert!(matches!(err, ZeroCopyError::NotFound { .. }));
    assert_eq!(kuai_core::Error::from(err).kind(), ErrorKind::NotFound);
    let err = transfer::send_path(dir.path(), &tx).unwrap_err();
    assert!(matches!(err, ZeroCopyError::IsDirectory { .. }));
    assert_eq!(kuai_core::Error::from(err).kind(), ErrorKind::InvalidInput);
    let err = transfer::send_path("/dev/null", &tx).unwrap_err();
    assert!(matches!(err, ZeroCopyError::NotRegularFile { .. }));
    let fifo = dir.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let err = transfer::send_path(&fifo, &tx).unwrap_err();
    assert!(matches!(
        err,
        ZeroCopyError::NotRegularFile { kind: "fifo", .. }
    ));
}

#[test]
fn permission_denied_is_a_typed_error() {
    let dir = TempDir::new("fault-perm");
    let (path, _) = write_file(&dir, "secret", 100);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Root bypasses file modes, so drop to an unprivileged effective uid on
    // a thread of our own (Linux credentials are per thread at the syscall
    // level; the thread ends with the test).
    let handle = std::thread::spawn(move || {
        if rustix::process::geteuid().is_root() {
            // Only this thread's credentials change.
            rustix::thread::set_thread_res_uid(
                rustix::process::getuid(),
                rustix::process::Uid::from_raw(65534),
                rustix::process::getuid(),
            )
            .expect("drop euid");
        }
        let r1 = open_regular(&path).map(|_| ());
        let r2 = kuai_zerocopy::MappedFile::open(&path).map(|_| ());
        (r1, r2)
    });
    let (r1, r2) = handle.join().unwrap();
    for r in [r1, r2] {
        let err = r.unwrap_err();
        assert!(
            matches!(err, ZeroCopyError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert_eq!(kuai_core::Error::from(err).kind(), ErrorKind::Backend);
    }
}
