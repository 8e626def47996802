//! NATS JetStream adapter tests. They need `nats-server -js` on
//! 127.0.0.1:4222 and FAIL (never skip) when it is missing.
#![cfg(feature = "nats")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kuai_queue::log::Log;
use kuai_queue::nats::{DEFAULT_URL, JetStream, OutboxRelay};

async fn connect() -> JetStream {
    match JetStream::connect(DEFAULT_URL).await {
        Ok(js) => js,
        Err(e) => panic!(
            "NATS JetStream is required for the `nats` feature tests: {e}. \
             Start it with `nats-server -js -a 127.0.0.1 -p 4222`."
        ),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), fastrand::u32(..))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn publish_with_acks_dedups_by_msg_id() {
    rt().block_on(async {
        let js = connect().await;
        let stream = unique("KUAI_PUB");
        let subject = format!("{stream}.events");
        js.ensure_stream(&stream, &[&subject], Duration::from_secs(120))
            .await
            .expect("stream");
        let a = js
            .publish(&subject, Bytes::from_static(b"one"), Some("id-1"))
            .await
            .expect("publish");
        assert!(!a.duplicate);
        let b = js
            .publish(&subject, Bytes::from_static(b"one again"), Some("id-1"))
            .await
            .expect("publish");
        assert!(b.duplicate);
        assert_eq!(js.stream_len(&stream).await.expect("len"), 1);
        js.delete_stream(&stream).await.expect("delete");
    });
}

#[test]
fn durable_consumer_resumes_and_redelivers_unacked() {
    rt().block_on(async {
        let js = connect().await;
        let stream = unique("KUAI_DUR");
        let subject = format!("{stream}.jobs");
        js.ensure_stream(&stream, &[&subject], Duration::from_secs(120))
            .await
            .expect("stream");
        for i in 0..4u8 {
            js.publish(&subject, Bytes::from(vec![i]), None)
                .await
                .expect("publish");
        }
        let ack_wait = Duration::from_secs(1);
        {
            let c = js
                .durable_consumer(&stream, "worker", ack_wait)
                .await
                .expect("consumer");
            let got = c.fetch(2, Duration::from_secs(2)).await.expect("fetch");
            assert_eq!(got.len(), 2);
            got[0].ack().await.expect("ack");
            // got[1] is never acked: this worker "crashes".
        }
        let c = js
            .durable_consumer(&stream, "worker", ack_wait)
            .await
            .expect("consumer");
        let mut seen = Vec::new();
        for _ in 0..10 {
            for m in c
                .fetch(10, Duration::from_millis(500))
                .await
                .expect("fetch")
            {
                seen.push(m.payload()[0]);
                m.ack().await.expect("ack");
            }
            if seen.len() >= 3 {
                break;
            }
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            vec![1, 2, 3],
            "the unacked message comes back, the acked one does not"
        );
        js.delete_stream(&stream).await.expect("delete");
    });
}

#[test]
fn outbox_relay_delivers_each_offset_once_even_after_a_lost_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path().join("outbox")).expect("log"));
    for i in 0..25u32 {
        log.append_sync(format!("event {i}").as_bytes())
            .expect("append");
    }
    rt().block_on(async {
        let js = connect().await;
        let stream = unique("KUAI_OUTBOX");
        let subject = format!("{stream}.out");
        js.ensure_stream(&stream, &[&subject], Duration::from_secs(120))
            .await
            .expect("stream");
        let cursor = dir.path().join("cursor");
        let mut relay =
            OutboxRelay::new(Arc::clone(&log), js.clone(), &subject, "outbox-a", &cursor)
                .expect("relay");
        let r = relay.relay_once(10).await.expect("relay");
        assert_eq!((r.sent, r.duplicates, r.next_offset), (10, 0, 10));
        let r = relay.relay_once(100).await.expect("relay");
        assert_eq!((r.sent, r.next_offset), (15, 25));
        // A crash that lost the cursor: everything is resent, nothing lands twice.
        std::fs::remove_file(&cursor).expect("rm cursor");
        let mut again =
            OutboxRelay::new(Arc::clone(&log), js.clone(), &subject, "outbox-a", &cursor)
                .expect("relay");
        let r = again.relay_once(100).await.expect("relay");
        assert_eq!((r.sent, r.duplicates), (25, 25));
        assert_eq!(js.stream_len(&stream).await.expect("len"), 25);
        let c = js
            .durable_consumer(&stream, "reader", Duration::from_secs(5))
            .await
            .expect("consumer");
        let got = c.fetch(100, Duration::from_secs(1)).await.expect("fetch");
        assert_eq!(got.len(), 25);
        assert_eq!(got[3].msg_id(), Some("outbox-a-3"));
        assert_eq!(got[3].payload().as_ref(), b"event 3");
        js.delete_stream(&stream).await.expect("delete");
    });
}
