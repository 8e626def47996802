//! End-to-end behaviour of the main/sub reactor server over loopback TCP.

use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use kuai_core::CountingMetrics;
use kuai_reactor::frame::Frame;
use kuai_reactor::{
    AcceptMode, Client, LeastLoaded, ReactorError, Server, ServerBuilder, service_fn,
};

fn echo_server(b: ServerBuilder) -> Server {
    match b.serve("127.0.0.1:0", |_| {
        service_fn(|req: Bytes| async move { Ok(req) })
    }) {
        Ok(s) => s,
        Err(e) => panic!("server failed to start: {e}"),
    }
}

fn connect(server: &Server) -> Client {
    match Client::connect(server.local_addr()) {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    }
}

/// Reads until the server closes the connection (EOF or reset).
fn wait_closed(client: &mut Client) -> bool {
    loop {
        match client.recv_frame() {
            Ok(_) => continue,
            Err(ReactorError::Closed(_)) => return true,
            Err(ReactorError::Io(e)) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                );
            }
            Err(_) => return false,
        }
    }
}

#[test]
fn echo_pipelined_in_both_accept_modes() {
    for mode in [AcceptMode::MainSub, AcceptMode::ReusePort] {
        let server = echo_server(Server::builder().threads(2).accept_mode(mode));
        let mut clients: Vec<Client> = (0..4).map(|_| connect(&server)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let reqs: Vec<Vec<u8>> = (0..50).map(|j| format!("{i}:{j}").into_bytes()).collect();
            assert!(c.send_many(reqs.iter().map(|r| &r[..])).is_ok());
            for r in &reqs {
                assert_eq!(c.recv().ok().as_deref(), Some(&r[..]), "{mode:?}");
            }
            // An empty frame is a valid request too.
            assert_eq!(c.call(b"").ok().as_deref(), Some(&b""[..]));
        }
        drop(clients);
        let stats = server.shutdown();
        assert_eq!(stats.requests, 4 * 51, "{mode:?}");
        assert_eq!(stats.active, 0);
    }
}

#[test]
fn large_frames_span_many_reads() {
    let server = echo_server(
        Server::builder()
            .threads(1)
            .read_buffer(1024)
            .max_frame(1 << 20),
    );
    let mut c = connect(&server);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.call(&big).ok().as_deref(), Some(&big[..]));
    assert_eq!(c.call(b"after").ok().as_deref(), Some(&b"after"[..]));
}

#[test]
fn oversized_and_garbage_frames_close_only_that_connection() {
    let server = echo_server(Server::builder().threads(1).max_frame(64));
    let mut good = connect(&server);
    assert!(good.call(b"before").is_ok());

    let mut big = connect(&server);
    assert!(big.stream_mut().write_all(&[0, 0, 1, 0]).is_ok()); // declares 256 > 64
    assert!(matches!(big.recv(), Err(ReactorError::Remote(m)) if m.contains("exceeds")));
    assert!(wait_closed(&mut big));

    let mut evil = connect(&server);
    assert!(evil.stream_mut().write_all(&[0x80, 0, 0, 1, b'x']).is_ok()); // error flag from a client
    assert!(matches!(evil.recv(), Err(ReactorError::Remote(_))));
    assert!(wait_closed(&mut evil));

    assert_eq!(
        good.call(b"still fine").ok().as_deref(),
        Some(&b"still fine"[..])
    );
    drop(good);
    assert_eq!(server.shutdown().frame_errors, 2);
}

#[test]
fn handler_errors_and_panics_kill_only_the_request() {
    let server = Server::builder().threads(1).serve("127.0.0.1:0", |_| {
        service_fn(|req: Bytes| async move {
            match &req[..] {
                b"panic" => panic!("handler bug (expected by the test)"),
                b"fail" => Err(kuai_core::Error::not_found("no such key")),
                _ => Ok(req),
            }
        })
    });
    let Ok(server) = server else { panic!("start") };
    let mut c = connect(&server);
    assert!(matches!(c.call(b"panic"), Err(ReactorError::Remote(m)) if m.contains("panicked")));
    assert!(matches!(c.call(b"fail"), Err(ReactorError::Remote(m)) if m.contains("no such key")));
    assert_eq!(c.call(b"ok").ok().as_deref(), Some(&b"ok"[..]));
    let mut other = connect(&server);
    assert!(other.call(b"x").is_ok());
    drop((c, other));
    let stats = server.shutdown();
    assert_eq!((stats.panics, stats.requests), (1, 4));
}

#[test]
fn connections_beyond_the_limit_are_refused_cleanly() {
    let metrics = CountingMetrics::default();
    let server = echo_server(
        Server::builder()
            .threads(2)
            .max_connections(2)
            .metrics(std::sync::Arc::new(metrics.clone())),
    );
    let mut a = connect(&server);
    let mut b = connect(&server);
    assert!(a.call(b"a").is_ok() && b.call(b"b").is_ok());
    let mut c = connect(&server);
    assert!(matches!(c.recv(), Err(ReactorError::Remote(m)) if m.contains("max connections")));
    assert!(wait_closed(&mut c));
    drop(a);
    // The slot frees once the server notices the close.
    let mut d = None;
    for _ in 0..500 {
        if server.stats().active < 2 {
            d = Some(connect(&server));
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let Some(mut d) = d else {
        panic!("slot never freed")
    };
    assert_eq!(d.call(b"d").ok().as_deref(), Some(&b"d"[..]));
    assert!(b.call(b"b2").is_ok());
    drop((b, d));
    let stats = server.shutdown();
    assert_eq!(stats.refused, 1);
    assert_eq!(metrics.counter_value("reactor.refused"), 1);
    assert_eq!(metrics.counter_value("reactor.requests"), 4);
    assert_eq!(
        metrics.histogram_summary("reactor.request_ns").map(|s| s.0),
        Some(4)
    );
}

#[test]
fn slow_loris_and_idle_connections_are_cut() {
    let server = echo_server(
        Server::builder()
            .threads(1)
            .read_timeout(Some(Duration::from_millis(100)))
            .idle_timeout(Some(Duration::from_millis(150))),
    );
    let mut loris = connect(&server);
    // Half a header, then nothing: the read timeout cuts it.
    assert!(loris.stream_mut().write_all(&[0, 0]).is_ok());
    assert!(wait_closed(&mut loris));

    let mut trickle = connect(&server);
    // Header declaring 100 bytes, then 1 byte at a time, too slowly.
    assert!(trickle.stream_mut().write_all(&[0, 0, 0, 100]).is_ok());
    let mut cut = false;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(20));
        if trickle.stream_mut().write_all(b"x").is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1];
        let _ = trickle.stream_mut().set_nonblocking(true);
        let r = trickle.stream_mut().read(&mut probe);
        let _ = trickle.stream_mut().set_nonblocking(false);
        if matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a trickling client must be cut by the read timeout");

    let mut idle = connect(&server);
    assert!(idle.call(b"hi").is_ok());
    assert!(wait_closed(&mut idle));
    assert!(server.shutdown().timed_out >= 3);
}

#[test]
fn shutdown_drains_in_flight_requests() {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let started_tx = std::sync::Mutex::new(started_tx);
    let server = Server::builder().threads(1).serve("127.0.0.1:0", move |_| {
        let tx = started_tx.lock().map(|t| t.clone()).ok();
        service_fn(move |req: Bytes| {
            if let Some(tx) = &tx {
                let _ = tx.send(());
            }
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(req)
            }
        })
    });
    let Ok(server) = server else { panic!("start") };
    let mut busy = connect(&server);
    let mut idle = connect(&server);
    assert!(busy.send(b"in flight").is_ok());
    assert!(started_rx.recv_timeout(Duration::from_secs(10)).is_ok());
    let stats = std::thread::scope(|s| {
        let h = s.spawn(|| server.shutdown());
        assert_eq!(busy.recv().ok().as_deref(), Some(&b"in flight"[..]));
        assert!(wait_closed(&mut busy));
        assert!(wait_closed(&mut idle));
        h.join()
    });
    let Ok(stats) = stats else {
        panic!("shutdown panicked")
    };
    assert_eq!((stats.requests, stats.aborted_on_shutdown), (1, 0));
}

#[test]
fn per_thread_state_without_locks_and_least_loaded_pinning() {
    let server = Server::builder()
        .threads(2)
        .balancer(LeastLoaded::new())
        .serve("127.0.0.1:0", |thread| {
            // Per-thread, non-Sync state: a Cell, no lock.
            let served = std::rc::Rc::new(Cell::new(0u64));
            service_fn(move |_req: Bytes| {
                let served = std::rc::Rc::clone(&served);
                async move {
                    served.set(served.get() + 1);
                    Ok(Bytes::from(format!("{thread}:{}", served.get())))
                }
            })
        });
    let Ok(server) = server else { panic!("start") };
    let mut clients: Vec<Client> = (0..4).map(|_| connect(&server)).collect();
    let mut first = Vec::new();
    for c in &mut clients {
        let Ok(r) = c.call(b"") else { panic!("call") };
        first.push(String::from_utf8_lossy(&r).into_owned());
    }
    assert_eq!(server.thread_loads(), vec![2, 2]);
    // A connection stays on its thread for life.
    for (c, f) in clients.iter_mut().zip(&first) {
        let Ok(r) = c.call(b"") else { panic!("call") };
        let r = String::from_utf8_lossy(&r).into_owned();
        assert_eq!(r.split(':').next(), f.split(':').next());
    }
    assert!(matches!(client_frame(&mut clients[0]), Frame::Data(_)));
}

fn client_frame(c: &mut Client) -> Frame {
    assert!(c.send(b"").is_ok());
    match c.recv_frame() {
        Ok(f) => f,
        Err(e) => panic!("recv: {e}"),
    }
}

#[test]
fn bad_configuration_is_an_error() {
    let svc = |_| service_fn(|r: Bytes| async move { Ok(r) });
    assert!(matches!(
        Server::builder().threads(0).serve("127.0.0.1:0", svc),
        Err(ReactorError::InvalidConfig(_))
    ));
    assert!(matches!(
        Server::builder()
            .read_timeout(Some(Duration::ZERO))
            .serve("127.0.0.1:0", svc),
        Err(ReactorError::InvalidConfig(_))
    ));
}

#[test]
fn services_compose_batching_hedging_and_after_response() {
    use kuai_reactor::{AfterResponse, Batcher, Hedger, Idempotency};
    let post = std::sync::Arc::new(match AfterResponse::builder().capacity(64).build() {
        Ok(p) => p,
        Err(e) => panic!("after-response: {e}"),
    });
    let post_in = std::sync::Arc::clone(&post);
    let server = Server::builder().threads(2).serve("127.0.0.1:0", move |_| {
        // Built inside the I/O thread's runtime: a per-thread batcher.
        let batcher = Batcher::builder().window(Duration::from_millis(1)).build(
            |keys: Vec<Bytes>| async move {
                Ok::<_, std::io::Error>(keys.into_iter().map(|k| k.len()).collect::<Vec<usize>>())
            },
        );
        let Ok(batcher) = batcher else {
            panic!("batcher outside a runtime")
        };
        let hedger = Hedger::builder().build();
        let post = std::sync::Arc::clone(&post_in);
        service_fn(move |req: Bytes| {
            let (batcher, hedger, post) = (
                batcher.clone(),
                hedger.clone(),
                std::sync::Arc::clone(&post),
            );
            async move {
                let len = hedger
                    .call(Idempotency::Idempotent, || batcher.load(req.clone()))
                    .await?;
                // A non-critical post-step, off the request path.
                let _ = post.submit(async {});
                Ok(Bytes::from(len.to_string()))
            }
        })
    });
    let Ok(server) = server else { panic!("start") };
    let mut c = connect(&server);
    assert_eq!(c.call(b"12345").ok().as_deref(), Some(&b"5"[..]));
    assert!(c.send_many([&b"a"[..], &b"bb"[..], &b"ccc"[..]]).is_ok());
    for want in [&b"1"[..], b"2", b"3"] {
        assert_eq!(c.recv().ok().as_deref(), Some(want));
    }
    drop(c);
    let _ = server.shutdown();
    let stats = match std::sync::Arc::try_unwrap(post) {
        Ok(p) => p.shutdown(Duration::from_secs(5)),
        Err(p) => p.stats(),
    };
    assert_eq!(stats.submitted, 4);
}

#[test]
fn request_latency_lands_in_an_hdr_histogram() {
    let metrics = std::sync::Arc::new(kuai_reactor::HdrMetrics::default());
    let server = echo_server(Server::builder().threads(1).metrics(metrics.clone()));
    let mut c = connect(&server);
    for _ in 0..20 {
        assert!(c.call(b"x").is_ok());
    }
    drop(c);
    let _ = server.shutdown();
    assert_eq!(metrics.samples("reactor.request_ns"), 20);
    assert!(metrics.quantile("reactor.request_ns", 0.99).is_some());
    assert_eq!(metrics.counter_value("reactor.requests"), 20);
    assert_eq!(metrics.counter_value("reactor.accepted"), 1);
    assert_eq!(metrics.gauge_value("reactor.connections"), Some(0));
}
