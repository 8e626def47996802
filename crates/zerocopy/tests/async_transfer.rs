//! The tokio variants: readiness-driven, zero-copy where the kernel allows.
#![cfg(feature = "tokio")]

mod common;

use bytes::Bytes;
use common::{TempDir, pattern, write_file};
use kuai_zerocopy::transfer::{Method, Transfer};
use kuai_zerocopy::{Counters, ZeroCopyError, open_regular};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    (s.unwrap().0, c.unwrap())
}

fn read_all(mut s: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.unwrap();
        v
    })
}

#[tokio::test(flavor = "current_thread")]
async fn file_to_socket_async_by_each_method() {
    let dir = TempDir::new("async-methods");
    let len = 4 * 1024 * 1024 + 99;
    let (path, data) = write_file(&dir, "f", len);
    let file = open_regular(&path).unwrap();
    for method in [Method::Auto, Method::Sendfile, Method::Splice, Method::Copy] {
        let (server, client) = tcp_pair().await;
        // The reader runs on the same single thread: the sender must yield
        // on EAGAIN (readiness), or this test would deadlock.
        let reader = read_all(client);
        let counters = Counters::new();
        let p = Transfer::new()
            .method(method)
            .counters(counters.clone())
            .file_to_socket_async(&file, 0, len as u64, &server)
            .await
            .unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap(), data, "{method:?}");
        assert_eq!(p.total(), len as u64);
        assert_eq!(counters.snapshot(), p);
        match method {
            // Auto to a loopback peer above 2 MiB: mmap + write.
            Method::Copy | Method::Auto => assert_eq!(p.copied, len as u64, "{method:?}"),
            _ => assert!(p.all_zero_copy(), "{method:?}: {p:?}"),
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn relay_async_splices_between_tcp_sockets() {
    let data = pattern(3 * 1024 * 1024 + 1);
    let (mut src_w, src_r) = tcp_pair().await;
    let (dst_w, dst_r) = tcp_pair().await;
    let reader = read_all(dst_r);
    let payload = data.clone();
    let writer = tokio::spawn(async move {
        src_w.write_all(&payload).await.unwrap();
        src_w.shutdown().await.unwrap();
    });
    let p = Transfer::new()
        .relay_async(&src_r, &dst_w, None)
        .await
        .unwrap();
    writer.await.unwrap();
    drop(dst_w);
    assert_eq!(reader.await.unwrap(), data);
    assert_eq!(p.zero_copy, data.len() as u64);
}

#[tokio::test(flavor = "current_thread")]
async fn write_all_bytes_async_and_peer_close() {
    let (server, client) = tcp_pair().await;
    let reader = read_all(client);
    let chain: Vec<Bytes> = (0..2000).map(|i| Bytes::from(pattern(i % 500))).collect();
    let expected: Vec<u8> = chain.iter().flat_map(|b| b.iter().copied()).collect();
    let p = Transfer::new()
        .write_all_bytes_async(&server, &chain)
        .await
        .unwrap();
    drop(server);
    assert_eq!(reader.await.unwrap(), expected);
    assert_eq!(p.copied, expected.len() as u64);

    // A peer that reads a little then goes away.
    let (server, mut client) = tcp_pair().await;
    let rude = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        client.read_exact(&mut buf).await.unwrap();
    });
    let dir = TempDir::new("async-peer");
    let (path, _) = write_file(&dir, "f", 32 * 1024 * 1024);
    let file = open_regular(&path).unwrap();
    let t = Transfer::new();
    let (res, _) = tokio::join!(
        t.file_to_socket_async(&file, 0, 32 * 1024 * 1024, &server),
        rude
    );
    match res {
        Err(ZeroCopyError::PeerClosed { progress, .. }) => {
            assert!(progress.total() >= 64 * 1024);
            assert!(progress.total() < 32 * 1024 * 1024);
        }
        other => panic!("expected PeerClosed, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tee_async_duplicates_into_two_sockets() {
    let data = pattern(2 * 1024 * 1024 + 3);
    let (mut src_w, src_r) = tcp_pair().await;
    let (a_w, a_r) = tcp_pair().await;
    let (b_w, b_r) = tokio::net::UnixStream::pair().unwrap();
    let ra = read_all(a_r);
    let rb = tokio::spawn(async move {
        let mut b_r = b_r;
        let mut v = Vec::new();
        b_r.read_to_end(&mut v).await.unwrap();
        v
    });
    let payload = data.clone();
    let writer = tokio::spawn(async move {
        src_w.write_all(&payload).await.unwrap();
        src_w.shutdown().await.unwrap();
    });
    let counters = Counters::new();
    let p = Transfer::new()
        .counters(counters.clone())
        .tee_async(&src_r, &a_w, &b_w, None)
        .await
        .unwrap();
    writer.await.unwrap();
    drop((a_w, b_w));
    assert_eq!(ra.await.unwrap(), data);
    assert_eq!(rb.await.unwrap(), data);
    assert_eq!(p.zero_copy, data.len() as u64);
    assert_eq!(counters.fallbacks(), 0);
}
