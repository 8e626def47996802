//! kuai-server's connections on kuai-reactor: both accept modes, large
//! pipelines (output backpressure), chained zero-copy values written with
//! `writev`, the idle timeout, and the reactor's counters in `INFO`.

mod common;

use std::time::Duration;

use common::RawClient;
use kuai::reactor::AcceptMode;
use kuai_server::frame::Frame;
use kuai_server::resp::encode_command;
use kuai_server::{Config, Server};

fn info(c: &mut RawClient, section: &[u8]) -> String {
    match c.cmd(&[b"INFO", section]) {
        Frame::Bulk(Some(b)) => String::from_utf8(b).expect("utf-8"),
        other => panic!("INFO gave {other:?}"),
    }
}

#[test]
fn both_accept_modes_serve_and_report_per_thread_counters() {
    for mode in [AcceptMode::MainSub, AcceptMode::ReusePort] {
        let h = Server::start(
            Config::builder()
                .port(0)
                .threads(2)
                .accept_mode(mode)
                .build(),
        )
        .expect("start");
        let mut clients: Vec<RawClient> =
            (0..4).map(|_| RawClient::connect(h.local_addr())).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let k = format!("k{i}");
            assert_eq!(
                c.cmd(&[b"SET", k.as_bytes(), b"v"]),
                Frame::Simple(b"OK".to_vec())
            );
            assert_eq!(
                c.cmd(&[b"GET", k.as_bytes()]),
                Frame::Bulk(Some(b"v".to_vec()))
            );
        }
        let text = info(&mut clients[0], b"kuai");
        let want_mode = match mode {
            AcceptMode::MainSub => "reactor_accept_mode:main-sub",
            _ => "reactor_accept_mode:reuseport",
        };
        assert!(text.contains(want_mode), "{text}");
        assert!(text.contains("reactor_thread0:"), "{text}");
        assert!(text.contains("reactor_thread1:"), "{text}");
        let stats = info(&mut clients[0], b"stats");
        let bytes_in: u64 = stats
            .lines()
            .find_map(|l| l.strip_prefix("total_net_input_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("total_net_input_bytes");
        assert!(bytes_in > 0, "{stats}");
        let net = h.net_stats().expect("reactor stats");
        assert_eq!(net.accept_mode(), mode);
        let per_thread = net.thread_stats();
        assert_eq!(per_thread.len(), 2);
        assert_eq!(per_thread.iter().map(|t| t.active).sum::<usize>(), 4);
        // 8 commands plus the INFO being answered (counted once answered).
        assert!(per_thread.iter().map(|t| t.requests).sum::<u64>() >= 9);
        drop(clients);
        h.shutdown().expect("shutdown");
    }
}

#[test]
fn a_huge_pipeline_is_answered_in_order_with_bounded_output() {
    let h = Server::start(Config::builder().port(0).build()).expect("start");
    let mut c = RawClient::connect(h.local_addr());
    let value = vec![b'v'; 1000];
    assert_eq!(
        c.cmd(&[b"SET", b"k", &value]),
        Frame::Simple(b"OK".to_vec())
    );
    // 3000 GETs in one write: ~3 MB of replies, far above the 256 KiB
    // high-water mark, so the server writes in the middle of the batch.
    let mut burst = Vec::new();
    for i in 0..3000 {
        if i % 2 == 0 {
            encode_command(&[b"GET", b"k"], &mut burst);
        } else {
            encode_command(&[b"STRLEN", b"k"], &mut burst);
        }
    }
    c.send_raw(&burst);
    for i in 0..3000 {
        let f = c.read_frame().expect("reply");
        if i % 2 == 0 {
            assert_eq!(f, Frame::Bulk(Some(value.clone())), "reply {i}");
        } else {
            assert_eq!(f, Frame::Integer(1000), "reply {i}");
        }
    }
    assert_eq!(c.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    h.shutdown().expect("shutdown");
}

#[test]
fn chained_large_values_are_written_whole_and_in_order() {
    let h = Server::start(Config::builder().port(0).build()).expect("start");
    let mut c = RawClient::connect(h.local_addr());
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        c.cmd(&[b"SET", b"big", &big]),
        Frame::Simple(b"OK".to_vec())
    );
    let mut burst = Vec::new();
    for _ in 0..20 {
        encode_command(&[b"GET", b"big"], &mut burst);
        encode_command(&[b"PING"], &mut burst);
    }
    c.send_raw(&burst);
    for _ in 0..20 {
        assert_eq!(c.read_frame(), Some(Frame::Bulk(Some(big.clone()))));
        assert_eq!(c.read_frame(), Some(Frame::Simple(b"PONG".to_vec())));
    }
    h.shutdown().expect("shutdown");
}

#[test]
fn idle_clients_are_closed_after_timeout() {
    let h = Server::start(Config::builder().port(0).timeout(1).build()).expect("start");
    let mut c = RawClient::connect(h.local_addr());
    assert_eq!(c.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    // An active client stays connected; an idle one is closed.
    assert_eq!(c.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    assert!(c.is_closed());
    h.shutdown().expect("shutdown");
}

#[test]
fn shutdown_does_not_wait_forever_for_a_half_sent_command() {
    let h = Server::start(Config::builder().port(0).build()).expect("start");
    let mut idle = RawClient::connect(h.local_addr());
    assert_eq!(idle.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    let mut half = RawClient::connect(h.local_addr());
    half.send_raw(b"*2\r\n$3\r\nGET\r\n$1");
    std::thread::sleep(Duration::from_millis(50));
    h.shutdown().expect("shutdown");
    assert!(idle.is_closed());
    assert!(half.is_closed());
}
