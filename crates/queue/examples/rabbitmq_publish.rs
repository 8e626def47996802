//! RabbitMQ confirmed-publish throughput beside kuai's durable log, at the
//! same durability, in the same run (feature `rabbitmq`, broker on
//! 127.0.0.1:5672):
//!
//! ```text
//! cargo run --release -p kuai-queue --features rabbitmq --example rabbitmq_publish [-- <millis>]
//! ```
//!
//! RabbitMQ: persistent 100 B messages into a durable classic queue,
//! publisher confirms, 256 confirms in flight (a confirm for a persistent
//! message in a durable queue is sent once the message is fsynced).
//! kuai: `Log` with group commit 1 ms and fdatasync before every ack, one
//! producer, 256 acks in flight.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kuai_queue::log::Log;
use kuai_queue::rabbitmq::{DEFAULT_URL, RabbitMq};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn rabbit(dur: Duration) -> Res<f64> {
    let mq = RabbitMq::connect(DEFAULT_URL).await?;
    let q = format!("kuai-bench-{}", std::process::id());
    mq.declare_durable_queue(&q).await?;
    let payload = [0x42u8; 100];
    let mut inflight = VecDeque::new();
    let start = Instant::now();
    let mut acked = 0u64;
    while start.elapsed() < dur {
        while inflight.len() < 256 {
            inflight.push_back(mq.publish_nowait(&q, &payload, None).await?);
        }
        for _ in 0..128 {
            if let Some(f) = inflight.pop_front() {
                f.await?;
                acked += 1;
            }
        }
    }
    for f in inflight {
        f.await?;
        acked += 1;
    }
    let rate = acked as f64 / start.elapsed().as_secs_f64();
    mq.delete_queue(&q).await?;
    mq.close().await?;
    Ok(rate)
}

fn kuai(dur: Duration) -> Res<f64> {
    let dir = tempfile::tempdir()?;
    let log = Log::builder(dir.path())
        .group_commit(Duration::from_millis(1))
        .open()?;
    let payload = [0x42u8; 100];
    let mut q = VecDeque::new();
    let start = Instant::now();
    let mut acked = 0u64;
    while start.elapsed() < dur {
        while q.len() < 256 {
            q.push_back(log.append(&payload)?);
        }
        for _ in 0..128 {
            if let Some(t) = q.pop_front() {
                t.wait()?;
                acked += 1;
            }
        }
    }
    for t in q {
        t.wait()?;
        acked += 1;
    }
    Ok(acked as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Res<()> {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dur = Duration::from_millis(ms);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("100 B, 256 acks in flight, fsync before ack, {ms} ms per run");
    for round in 0..3 {
        let r = rt.block_on(rabbit(dur))?;
        let k = kuai(dur)?;
        println!(
            "  round {round}: RabbitMQ (persistent, durable queue, confirms) {r:>9.0} msgs/s   kuai log (group commit 1 ms) {k:>9.0} msgs/s   kuai/RabbitMQ {:.1}x",
            k / r
        );
    }
    Ok(())
}
