//! RabbitMQ adapter tests. They need a broker on 127.0.0.1:5672
//! (guest/guest) and FAIL (never skip) when it is missing.
#![cfg(feature = "rabbitmq")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kuai_queue::log::Log;
use kuai_queue::rabbitmq::{DEFAULT_URL, OutboxRelay, RabbitMq};

async fn connect() -> RabbitMq {
    match RabbitMq::connect(DEFAULT_URL).await {
        Ok(mq) => mq,
        Err(e) => panic!(
            "RabbitMQ is required for the `rabbitmq` feature tests: {e}. \
             Start it with `service rabbitmq-server start` (listening on \
             127.0.0.1:5672, user guest/guest)."
        ),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), fastrand::u32(..))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn confirmed_publish_durable_queue_ack_and_redelivery() {
    rt().block_on(async {
        let mq = connect().await;
        let q = unique("kuai-rmq");
        mq.declare_durable_queue(&q).await.expect("declare");
        let mut pending = Vec::new();
        for i in 0..10u32 {
            let id = format!("m-{i}");
            pending.push(
                mq.publish_nowait(&q, format!("msg {i}").as_bytes(), Some(&id))
                    .await
                    .expect("publish"),
            );
        }
        for p in pending {
            p.await.expect("confirmed");
        }
        assert_eq!(mq.queue_len(&q).await.expect("len"), 10);

        // A consumer that takes 4 and crashes without acking...
        let mut crashed = mq.consumer(&q, "crashy", 4).await.expect("consumer");
        let mut seen = Vec::new();
        for _ in 0..4 {
            let d = crashed
                .next(Duration::from_secs(5))
                .await
                .expect("next")
                .expect("a delivery");
            assert!(!d.redelivered());
            seen.push(d.msg_id().map(str::to_string));
        }
        crashed.close().await.expect("close");
        // ...gets them redelivered to the next consumer, which acks all.
        let mut c = mq.consumer(&q, "steady", 16).await.expect("consumer");
        let mut got = BTreeMap::new();
        while got.len() < 10 {
            let d = c
                .next(Duration::from_secs(5))
                .await
                .expect("next")
                .expect("a delivery");
            let id = d.msg_id().expect("message id").to_string();
            if seen.contains(&Some(id.clone())) {
                assert!(d.redelivered(), "{id} should be a redelivery");
            }
            got.insert(id, String::from_utf8_lossy(d.payload()).to_string());
            d.ack().await.expect("ack");
        }
        assert_eq!(got.get("m-7").map(String::as_str), Some("msg 7"));
        assert!(
            c.next(Duration::from_millis(200))
                .await
                .expect("next")
                .is_none()
        );
        c.close().await.expect("close");
        assert_eq!(mq.delete_queue(&q).await.expect("delete"), 0);
        mq.close().await.expect("close");
    });
}

#[test]
fn publishing_to_a_missing_queue_is_an_error() {
    rt().block_on(async {
        let mq = connect().await;
        let r = mq
            .publish(&unique("kuai-no-such-queue"), b"lost", None)
            .await;
        assert!(r.is_err(), "{r:?}");
    });
}

#[test]
fn outbox_relay_into_rabbitmq_delivers_every_offset_with_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path().join("outbox")).expect("log"));
    for i in 0..25u32 {
        log.append_sync(format!("event {i}").as_bytes())
            .expect("append");
    }
    rt().block_on(async {
        let q = unique("kuai-outbox");
        let mq = connect().await;
        mq.declare_durable_queue(&q).await.expect("declare");
        let cursor = dir.path().join("cursor");
        let mut relay =
            OutboxRelay::rabbitmq(Arc::clone(&log), mq, &q, "outbox-r", &cursor).expect("relay");
        let r = relay.relay_once(10).await.expect("relay");
        assert_eq!((r.sent, r.next_offset), (10, 10));
        let r = relay.relay_once(100).await.expect("relay");
        assert_eq!((r.sent, r.next_offset), (15, 25));
        // A crash that lost the cursor: the whole outbox is resent, with the
        // same message ids, so the consumer can drop the copies.
        std::fs::remove_file(&cursor).expect("rm cursor");
        let mut again =
            OutboxRelay::rabbitmq(Arc::clone(&log), connect().await, &q, "outbox-r", &cursor)
                .expect("relay");
        let r = again.relay_once(100).await.expect("relay");
        assert_eq!((r.sent, r.next_offset), (25, 25));
        let mq = relay.sink().rabbitmq();
        assert_eq!(mq.queue_len(&q).await.expect("len"), 50);
        let mut c = mq.consumer(&q, "reader", 64).await.expect("consumer");
        let mut by_id = BTreeMap::new();
        for _ in 0..50 {
            let d = c
                .next(Duration::from_secs(5))
                .await
                .expect("next")
                .expect("a delivery");
            let id = d.msg_id().expect("message id").to_string();
            let body = String::from_utf8_lossy(d.payload()).to_string();
            if let Some(prev) = by_id.insert(id.clone(), body.clone()) {
                assert_eq!(prev, body, "a resend of {id} carries the same body");
            }
            d.ack().await.expect("ack");
        }
        assert_eq!(by_id.len(), 25);
        for i in 0..25 {
            assert_eq!(by_id[&format!("outbox-r-{i}")], format!("event {i}"));
        }
        c.close().await.expect("close");
        mq.delete_queue(&q).await.expect("delete");
    });
}
