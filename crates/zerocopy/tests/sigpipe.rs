//! With SIGPIPE at its default (fatal) action, writing to a closed peer with
//! sendfile/splice/write must still end in a typed error, not a dead process.
//! (Its own test binary: it changes a process-wide signal disposition.)

use std::os::unix::net::UnixStream;

use kuai_zerocopy::ZeroCopyError;
use kuai_zerocopy::transfer::{Method, Transfer};

#[test]
fn no_sigpipe_death() {
    // SAFETY: restoring the default disposition of SIGPIPE installs no
    // handler; nothing else in this test binary touches signals.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let path = std::env::temp_dir().join(format!("kuai-zc-sigpipe-{}", std::process::id()));
    std::fs::write(&path, vec![1u8; 1 << 20]).unwrap();
    let file = kuai_zerocopy::open_regular(&path).unwrap();
    for method in [Method::Sendfile, Method::Splice, Method::Copy] {
        // A pipe-like peer that is already gone: sendfile/splice into it
        // would raise SIGPIPE by default.
        let (tx, rx) = UnixStream::pair().unwrap();
        drop(rx);
        let err = Transfer::new()
            .method(method)
            .file_to_socket(&file, 0, 1 << 20, &tx)
            .unwrap_err();
        assert!(
            matches!(err, ZeroCopyError::PeerClosed { .. }),
            "{method:?}: {err:?}"
        );
        // An actual pipe, where only the signal disposition protects us.
        let (r, w) = rustix::pipe::pipe().unwrap();
        drop(r);
        let err = Transfer::new()
            .method(method)
            .file_to_socket(&file, 0, 1 << 20, &w)
            .unwrap_err();
        assert!(
            matches!(err, ZeroCopyError::PeerClosed { .. }),
            "{method:?}: {err:?}"
        );
    }
    std::fs::remove_file(&path).unwrap();
}
